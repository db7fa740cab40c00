"""Rate limits: limits set|show. The operator's per-minute and concurrency limits for an account or a key.

`set` calls the same function as the console's form (apilimits.set_overrides) as `Actor.cli()`,
so each change writes the same audit entry; a change that changes nothing exits 0 and says so.
"""
import click
from flask import current_app
from sqlalchemy import select

from .. import apilimits, audit, moderation
from ..database import atomic
from ..errors import DomainError
from ..extensions import db
from ..models import ApiKey
from . import limits_cli, shown


class LimitValue(click.ParamType):
    """A whole number, or "default" for the configured default."""

    name = "N|default"

    def convert(self, value, param, ctx):
        if value is None or value is apilimits.KEEP or isinstance(value, int):
            return value
        if str(value).strip().lower() == "default":
            return None
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not a whole number or 'default'", param, ctx)


_VALUE = LimitValue()


@limits_cli.command("set")
@click.argument("email")
@click.option("--key", "hint", metavar="KEY_HINT", help="One key of theirs (tg_…AbC1); without it, the account.")
@click.option("--rpm", type=_VALUE, default=apilimits.KEEP, help="Requests per minute (0: no limit; 'default').")
@click.option("--tpm", type=_VALUE, default=apilimits.KEEP, help="Tokens per minute (0: no limit; 'default').")
@click.option("--concurrency", type=_VALUE, default=apilimits.KEEP,
              help="Calls in flight at once, per serving process ('default').")
@click.option("--reason", help="Kept in the audit log.")
def limits_set(email, hint, rpm, tpm, concurrency, reason):
    """Set the operator's limits for a person's account, or for one of their keys."""
    if rpm is apilimits.KEEP and tpm is apilimits.KEEP and concurrency is apilimits.KEEP:
        raise click.UsageError("Say which limit to set: --rpm, --tpm and/or --concurrency.")
    try:
        with atomic():
            user = moderation.find_person(email)
            key = moderation.find_key(hint, user) if hint else None
            outcome = apilimits.set_overrides(audit.Actor.cli(), user, key, rpm=rpm, tpm=tpm, concurrency=concurrency,
                                              reason=reason or "set with flask limits set")
    except DomainError as exc:
        raise click.ClickException(shown(str(exc))) from None
    click.echo(shown(outcome.message))


@limits_cli.command("show")
@click.argument("email")
def limits_show(email):
    """Show the limits that apply to a person's account and each live key."""
    try:
        user = moderation.find_person(email)
    except DomainError as exc:
        raise click.ClickException(shown(str(exc))) from None
    config, account = current_app.config, user.account
    click.echo(f"account of {shown(user.email)}: {apilimits.describe(apilimits.fields(account))}")
    keys = db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
                              .order_by(ApiKey.id))
    for key in keys:
        rates = apilimits.rates(config, apilimits.overrides_of(key, account))
        click.echo(f"  key {key.hint} {shown(key.name)!r}: set {apilimits.describe(apilimits.fields(key))}; "
                   f"own requests/min {key.max_rpm or '-'}, tokens/min {key.max_tpm or '-'}; in effect: "
                   f"key {rates.key_rpm or 'no limit'} req/min, {rates.key_tpm or 'no limit'} tokens/min; "
                   f"account {rates.account_rpm or 'no limit'} req/min, {rates.account_tpm or 'no limit'} tokens/min")

