"""Users, credit and keys: users create|verify|suspend|unsuspend|show, credits grant|topup, keys create."""

import click

from .. import apikeys, ledger, payments, users
from ..errors import DomainError
from ..extensions import db
from ..models import EntryKind, utcnow
from ..money import format_usd, parse_usd
from . import _day, credits_cli, domain_command, keys_cli, shown, users_cli


@domain_command(users_cli, "create")
@click.argument("email")
@click.option("--password", help="Login password (omit for an account that cannot log in yet).")
@click.option("--admin", is_flag=True, help="Give operator rights in the portal.")
@click.option("--verified", is_flag=True, help="Mark the email address as verified.")
def users_create(email, password, admin, verified):
    """Create a user with an empty credit account."""
    user = users.create_user(email, password, admin=admin, verified=verified)
    click.echo(f"created {user.email}{' (admin)' if admin else ''}{' (verified)' if verified else ''}")


@domain_command(users_cli, "verify")
@click.argument("email")
def users_verify(email):
    """Mark a user's email address as verified."""
    user = users.find_user(email)
    user.is_verified = True
    click.echo(f"verified {user.email}")


@domain_command(users_cli, "suspend")
@click.argument("email")
@click.option("--reason", help="Shown to the user and kept for the record.")
def users_suspend(email, reason):
    """Suspend a user: their keys stop working at once."""
    user = users.find_user(email)
    users.suspend(user, reason)
    click.echo(f"suspended {user.email}: {user.status_reason}")


@domain_command(users_cli, "unsuspend")
@click.argument("email")
def users_unsuspend(email):
    """Lift a suspension."""
    user = users.find_user(email)
    users.unsuspend(user)
    click.echo(f"reactivated {user.email}")


@domain_command(credits_cli, "grant")
@click.argument("email")
@click.argument("usd")
@click.option("--reason", required=True, help="Why the credit is given (kept in the ledger).")
@click.option("--reference", help="Idempotency reference: granting twice with it credits once.")
@click.option("--counts-as-topup", is_flag=True,
              help="Move the credit expiry to 12 months from now, as a paid top-up does (it still is not paid money).")
def credits_grant(email, usd, reason, reference, counts_as_topup):
    """Grant USD (a decimal string such as 5 or 0.000050) to a user's balance; by default the expiry stays."""
    amount = parse_usd(usd)
    if amount == 0:
        raise click.ClickException("amount must be greater than zero")
    if not reason.strip():
        raise click.ClickException("--reason must not be empty")
    user = users.find_user(email)
    entry = ledger.credit(user.account.id, amount, EntryKind.GRANT, memo=reason.strip(), reference=reference,
                          topup_at=utcnow() if counts_as_topup else None)
    expires_at = user.account.credits_expire_at
    click.echo(f"granted {format_usd(amount)} to {user.email}; balance {format_usd(entry.balance_after)}"
               f"{f'; credits expire {expires_at:%Y-%m-%d %H:%M} UTC' if expires_at else ''}")


@domain_command(keys_cli, "create")
@click.argument("email")
@click.option("--name", default="", help="A label for the key.")
def keys_create(email, name):
    """Issue an API key; the key is printed alone on the last line and never shown again."""
    user = users.find_user(email)
    key, plaintext = apikeys.issue(user, name)
    click.echo(f"created key {key.name!r} ({key.hint}) for {user.email}")
    click.echo(plaintext)





@users_cli.command("show")
@click.argument("email")
def users_show(email):
    """Show a user's status, balance, expiry, what they paid in the past 12 months, and open questions."""
    try:
        user = users.find_user(email)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    view = payments.overview(user)
    account = view.account
    status = user.status + (f" ({shown(user.status_reason)})" if user.status_reason and user.status != "active" else "")
    click.echo(f"{shown(user.email)} (account {account.id})")
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
    click.echo(f"credited {format_usd(amount)} to {shown(user.email)} (payment #{payment.id}, {shown(method)}); "
               f"balance {format_usd(account.balance)}, credits valid until {_day(account.credits_expire_at)}")
