"""Abuse signals: `signals list`, the console's Signals page in the terminal, and `signals clear`."""
import click
from flask import current_app

from .. import audit, moderation, signals
from ..audit import require_reason
from . import _day, domain_command, shown, signals_cli


def _people(group: signals.Group) -> str:
    listed = ", ".join(f"{shown(p.email)} (#{p.user_id}, {p.status})" for p in group.people)
    return listed + (f" and {group.more} more" if group.more else "")


@domain_command(signals_cli, "list")
@click.option("--days", type=click.IntRange(1, 3650), default=signals.LOOKBACK_DAYS, show_default=True,
              help="How far back to look.")
def signals_list(days):
    """Keys flagged as shared, and accounts sharing a card, a sign-up address or their keys' addresses."""
    review = signals.review(current_app.config, days=days)
    click.echo("keys used from many addresses:")
    for key, user in review.flagged:
        state = f"revoked {_day(key.revoked_at)}" if key.revoked_at else "live"
        click.echo(f'  {key.hint} "{shown(key.name)}" of {shown(user.email)} (#{user.id}): {key.sharing_addresses} '
                   f"addresses, flagged {_day(key.sharing_flagged_at)}, {state}")
    if not review.flagged:
        click.echo("  none")
    sections = (("accounts paying with one card", review.cards, "card"),
                ("accounts signed up from one address", review.signups, "address"),
                ("accounts whose keys are used from one address", review.key_addresses, "address"))
    for title, groups, label in sections:
        click.echo(f"{title}:")
        for group in groups:
            click.echo(f"  {label} {group.what}: {_people(group)}")
        if not groups:
            click.echo("  none")


@domain_command(signals_cli, "clear")
@click.argument("hint", metavar="KEY_HINT")
@click.option("--reason", required=True, help="Why it is a false positive; kept in the audit log.")
@click.option("--user", "email", metavar="EMAIL", help="The key's owner, when several keys end alike.")
def signals_clear(hint, reason, email):
    """Clear a key's sharing flag as a false positive (its addresses of today stay forgiven)."""
    reason = require_reason(reason)
    key = moderation.find_key(hint, moderation.find_person(email) if email else None)
    signals.clear(key, actor=audit.Actor.cli(), reason=reason)
    click.echo(f"cleared the sharing flag of {key.hint} \"{shown(key.name)}\" of {shown(key.user.email)}")
