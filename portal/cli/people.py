"""People, credit and keys: users create|verify|list|show|suspend|unsuspend|terminate|admin|resend-verification,
credits grant|topup|adjust, keys create|revoke.

The operator's actions on people call the same domain functions as the console (moderation.py),
as `Actor.cli()`, so each writes the same audit entry. A repeated action that finds nothing to do
exits 0 and says so, with no second entry.
"""

from typing import Callable

import click

from .. import apikeys, audit, moderation, payments, users
from ..database import atomic
from ..errors import DomainError
from ..extensions import db
from ..models import User, UserStatus
from ..money import format_usd, parse_usd
from . import _day, credits_cli, domain_command, keys_cli, shown, users_cli

LIST_PAGE = 50


def _apply(action: Callable[[], moderation.Outcome]) -> moderation.Outcome:
    """Run one action in its own transaction, mail after commit, and print what it did (or that nothing changed)."""
    try:
        with atomic():
            outcome = action()
    except DomainError as exc:
        raise click.ClickException(shown(str(exc))) from None
    moderation.send(outcome)
    click.echo(shown(outcome.message))
    return outcome


def _person(email: str) -> User:
    try:
        return moderation.find_person(email)
    except DomainError as exc:
        raise click.ClickException(shown(str(exc))) from None


def _required(reason: str) -> str:
    if not (reason or "").strip():
        raise click.ClickException("--reason must not be empty")
    return reason.strip()


@users_cli.command("create")
@click.argument("email")
@click.option("--password", help="Login password (omit for an account that cannot log in yet).")
@click.option("--admin", is_flag=True,
              help="Give operator rights in the portal (the console at /admin also needs the person's two-factor on).")
@click.option("--verified", is_flag=True, help="Mark the email address as verified.")
def users_create(email, password, admin, verified):
    """Create a user with an empty credit account."""
    _apply(lambda: moderation.create_user(audit.Actor.cli(), email, password, admin=admin, verified=verified))


@users_cli.command("admin")
@click.argument("email")
@click.option("--on/--off", "on", default=None, help="Give (--on) or take away (--off) operator rights.")
@click.option("--reason", help="Kept in the audit log.")
def users_admin(email, on, reason):
    """Give or take away operator rights (the console also needs the person's two-factor on)."""
    if on is None:
        raise click.UsageError("Say --on to give operator rights, or --off to take them away.")
    _apply(lambda: moderation.set_admin(audit.Actor.cli(), _person(email), on, reason))


@domain_command(users_cli, "verify")
@click.argument("email")
def users_verify(email):
    """Mark a user's email address as verified."""
    user = users.find_user(email)
    if user.is_verified:
        click.echo(f"{shown(user.email)} is already verified; nothing changed")
        return
    user.is_verified = True
    audit.record(audit.Actor.cli(), "user.verify", "user", user.id, before={"is_verified": False},
                 after={"is_verified": True})
    click.echo(f"verified {shown(user.email)}")


@users_cli.command("list")
@click.option("--search", default="", help="Part of the email address (any case).")
@click.option("--page", default=1, type=click.IntRange(min=1), show_default=True,
              help=f"Which page of {LIST_PAGE}, newest first.")
def users_list(search, page):
    """List users, newest first: status, balance, and flags."""
    query = moderation.search(search).limit(LIST_PAGE + 1).offset((page - 1) * LIST_PAGE)
    rows = db.session.execute(query).all()
    if not rows:
        click.echo("no users match" if search else "no users yet")
        return
    for user, account in rows[:LIST_PAGE]:
        flags = ", ".join(flag for flag, on in (("admin", user.is_admin), ("unverified", not user.is_verified)) if on)
        click.echo(f"{user.id:>6}  {shown(user.email):<40} {user.status:<10} {format_usd(account.balance):>12}"
                   f"  since {user.created_at:%Y-%m-%d}{f'  ({flags})' if flags else ''}")
    if len(rows) > LIST_PAGE:
        click.echo(f"... more: --page {page + 1}")


@users_cli.command("show")
@click.argument("email")
def users_show(email):
    """Show a user's status, balance, expiry, what they paid in the past 12 months, keys, consents and history."""
    user = _person(email)
    found = moderation.profile(user)
    view, account = found.overview, found.account
    status = user.status + (f" ({shown(user.status_reason)})" if user.status_reason and user.status != "active" else "")
    flags = ", ".join(flag for flag, on in (("admin", user.is_admin), ("two-factor on", user.totp_enabled_at),
                                            ("unverified", not user.is_verified)) if on)
    click.echo(f"{shown(user.email)} (user {user.id}, account {account.id}){f'  [{flags}]' if flags else ''}")
    click.echo(f"  status:        {status}")
    click.echo(f"  balance:       {format_usd(account.balance)}")
    click.echo(f"  held:          {format_usd(account.held)}")
    click.echo(f"  available:     {format_usd(account.available)}")
    click.echo(f"  last top-up:   {_day(account.last_topup_at)}")
    click.echo(f"  expires:       {_day(account.credits_expire_at)}")
    click.echo(f"  paid, past 12 months: {format_usd(view.paid_gross)} "
               f"({format_usd(view.paid_net)} net of refunds and disputes)")
    refund = view.open_refund
    click.echo("  open refund request: " + ("none" if refund is None else
               f"#{refund.id} of {refund.created_at:%Y-%m-%d} ({format_usd(refund.balance_at_request)} at the time)"))
    for payment in view.disputed:
        click.echo(f"  dispute: payment #{payment.id} of {format_usd(payment.amount)}: {payment.dispute_status}, "
                   f"{format_usd(payment.disputed)} debited")
    for event in view.flagged:
        click.echo(f"  flagged: {event.received_at:%Y-%m-%d %H:%M} {event.type} {event.id}: {shown(event.outcome)}")
    for row in found.keys:
        key = row.key
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "live"
        addresses = ", ".join(ip for ip, _, _ in row.addresses) or "no calls in 30 days"
        click.echo(f"  key {key.hint} {shown(key.name)!r}: {state}, last used {_day(key.last_used_at)}; "
                   f"addresses: {addresses}")
    for acceptance, document in found.consents:
        click.echo(f"  accepted {document.kind} {shown(document.version)} on {acceptance.accepted_at:%Y-%m-%d}")
    for entry in found.history[:10]:
        click.echo(f"  audit: {entry.at:%Y-%m-%d %H:%M} {entry.action} by {shown(entry.actor)}"
                   f"{f': {shown(entry.reason)}' if entry.reason else ''}")


@users_cli.command("suspend")
@click.argument("email")
@click.option("--reason", required=True, help="Mailed to the user and kept in the audit log.")
def users_suspend(email, reason):
    """Suspend a user: keys refused at once, sessions ended, the reason mailed; they keep read-only access."""
    reason = _required(reason)
    _apply(lambda: moderation.suspend(audit.Actor.cli(), _person(email), reason))


@users_cli.command("unsuspend")
@click.argument("email")
@click.option("--reason", help="Mailed to the user and kept in the audit log.")
def users_unsuspend(email, reason):
    """Lift a suspension (the user is mailed)."""
    _apply(lambda: moderation.unsuspend(audit.Actor.cli(), _person(email), reason))


@users_cli.command("terminate")
@click.argument("email")
@click.option("--reason", required=True, help="Mailed to the user and kept in the audit log.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def users_terminate(email, reason, yes):
    """End an account for good: the balance is forfeited without refund, keys revoked, sessions ended."""
    reason = _required(reason)
    user = _person(email)
    if not yes and user.status != UserStatus.TERMINATED.value:
        click.confirm(f"Terminate {shown(user.email)}? The balance of {format_usd(user.account.balance)} is forfeited "
                      "without refund, every key is revoked and they cannot log in again.", abort=True)
    _apply(lambda: moderation.terminate(audit.Actor.cli(), _person(email), reason))


@users_cli.command("resend-verification")
@click.argument("email")
def users_resend_verification(email):
    """Mail a fresh verification link to a user who has not confirmed their address."""
    _apply(lambda: moderation.resend_verification(audit.Actor.cli(), _person(email)))


@credits_cli.command("grant")
@click.argument("email")
@click.argument("usd")
@click.option("--reason", required=True, help="Why the credit is given (kept in the ledger and the audit log).")
@click.option("--reference", help="Idempotency reference: granting twice with it credits once.")
@click.option("--counts-as-topup", is_flag=True,
              help="Move the credit expiry to 12 months from now, as a paid top-up does (it still is not paid money).")
def credits_grant(email, usd, reason, reference, counts_as_topup):
    """Grant USD (a decimal string such as 5 or 0.000050) to a user's balance; by default the expiry stays."""
    try:
        amount = parse_usd(usd)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    if amount == 0:
        raise click.ClickException("amount must be greater than zero")
    reason = _required(reason)
    _apply(lambda: moderation.grant(audit.Actor.cli(), _person(email), amount, reason, reference=reference,
                                    counts_as_topup=counts_as_topup))


# A negative amount ("-0.5") is an argument, not an unknown option: click would otherwise refuse it.
@credits_cli.command("adjust", context_settings={"ignore_unknown_options": True})
@click.argument("email")
@click.argument("usd", metavar="±USD")
@click.option("--reason", required=True, help="Kept in the audit log, and shown on the user's statement.")
@click.option("--counts-as-topup", is_flag=True,
              help="A credit that moves the expiry to 12 months from now, as a paid top-up does.")
def credits_adjust(email, usd, reason, counts_as_topup):
    """Credit (2) or debit (-0.5) a user's balance in USD; a debit takes only from the available balance."""
    reason = _required(reason)
    try:
        amount = moderation.parse_signed_usd(usd)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    _apply(lambda: moderation.adjust_balance(audit.Actor.cli(), _person(email), amount, reason,
                                             counts_as_topup=counts_as_topup))


@domain_command(keys_cli, "create")
@click.argument("email")
@click.option("--name", default="", help="A label for the key.")
def keys_create(email, name):
    """Issue an API key; the key is printed alone on the last line and never shown again."""
    user = users.find_user(email)
    key, plaintext = apikeys.issue(user, name)
    db.session.flush()
    audit.record(audit.Actor.cli(), "key.create", "user", user.id, after={"key": key.id, "hint": key.hint,
                                                                           "name": key.name})
    click.echo(f"created key {key.name!r} ({key.hint}) for {user.email}")
    click.echo(plaintext)


@keys_cli.command("revoke")
@click.argument("hint", metavar="KEY_HINT")
@click.option("--owner", help="The owner's email, when several keys share the hint.")
@click.option("--reason", help="Kept in the audit log.")
def keys_revoke(hint, owner, reason):
    """Revoke any user's key by the hint shown in lists (tg_…AbC1); the proxy refuses it from the next call."""
    def action():
        return moderation.revoke_key(audit.Actor.cli(),
                                     moderation.find_key(hint, _person(owner) if owner else None), reason)
    _apply(action)


@domain_command(credits_cli, "topup")
@click.argument("email")
@click.argument("usd")
@click.option("--reference", required=True,
              help="The transfer's or receipt's number: recording it twice credits once.")
@click.option("--method", default="bank transfer", show_default=True, help="How the money was paid.")
def credits_topup(email, usd, reference, method):
    """Record a paid top-up received by hand (bank transfer, cash): it moves the expiry, unlike a grant."""
    amount = parse_usd(usd)
    user = users.find_user(email)
    again = payments.manual_payment(reference) is not None
    payment = payments.record_manual_topup(user, amount, reference, method)
    if again:
        click.echo(f"already recorded: payment #{payment.id} of {format_usd(payment.amount)} with reference "
                   f"{shown(payment.reference)}; nothing credited")
        return
    db.session.flush()
    account = user.account
    db.session.refresh(account)
    audit.record(audit.Actor.cli(), "credits.topup", "user", user.id,
                 after={"payment": payment.id, "amount": amount, "reference": payment.reference, "method": method,
                        "balance": account.balance, "credits_expire_at": account.credits_expire_at})
    click.echo(f"credited {format_usd(amount)} to {shown(user.email)} (payment #{payment.id}, {shown(method)}); "
               f"balance {format_usd(account.balance)}, credits valid until {_day(account.credits_expire_at)}")
