"""What users sent the operator: inbox messages|refunds|payments, refunds list|approve|reject."""

import click
from sqlalchemy import select

from .. import refunds as refund_requests
from ..errors import DomainError
from ..extensions import db
from ..models import Account, ContactMessage, RefundRequest, StripeEvent, User
from ..money import format_usd
from . import domain_command, inbox_cli, refunds_cli, shown


@inbox_cli.command("messages")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
def inbox_messages(limit):
    """Show contact-form messages."""
    rows = db.session.scalars(select(ContactMessage).order_by(ContactMessage.id.desc()).limit(limit)).all()
    for m in rows:
        click.echo(f"#{m.id} {m.created_at:%Y-%m-%d %H:%M} {shown(m.email)} ({shown(m.ip)}) — {shown(m.subject)}\n"
                   f"  {shown(m.message, multiline=True)}")
    if not rows:
        click.echo("no messages")


@inbox_cli.command("refunds")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
def inbox_refunds(limit):
    """Show refund requests (the payout itself is the operator's to make)."""
    rows = db.session.execute(select(RefundRequest, RefundRequest.contact_email)  # closing anonymises User.email
                              .order_by(RefundRequest.id.desc()).limit(limit)).all()
    for refund, email in rows:
        click.echo(f"#{refund.id} {refund.created_at:%Y-%m-%d %H:%M} {shown(email)} {format_usd(refund.balance_at_request)} "
                   f"[{refund.status}] {shown(refund.reason, multiline=True)}")
    if not rows:
        click.echo("no refund requests")


@inbox_cli.command("payments")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
def inbox_payments(limit):
    """Show Stripe events flagged for you: disputes, and payments that could not be credited as they were."""
    rows = db.session.execute(select(StripeEvent, User.email).outerjoin(Account, Account.id == StripeEvent.account_id)
                              .outerjoin(User, User.id == Account.user_id).where(StripeEvent.flagged.is_(True))
                              .order_by(StripeEvent.received_at.desc()).limit(limit)).all()
    for event, email in rows:
        click.echo(f"{event.received_at:%Y-%m-%d %H:%M} {event.type} {event.id} {shown(email) if email else '(no account)'}"
                   f"\n  {shown(event.outcome)}")
    if not rows:
        click.echo("nothing flagged")





@domain_command(refunds_cli, "list")
@click.option("--all", "include_closed", is_flag=True, help="Also list paid, refused and cancelled requests.")
def refunds_list(include_closed):
    """List refund requests, open ones first, with what approving would refund now."""
    rows = refund_requests.listing(include_closed)
    for row in rows:
        r = row.request
        line = (f"#{r.id} {r.created_at:%Y-%m-%d %H:%M} {shown(r.contact_email)} [{r.status}] "
                f"balance when asked {format_usd(r.balance_at_request)}")
        if row.refundable is not None:
            plan = row.refundable
            line += f"; refundable now {format_usd(plan.amount)}"
            line += f" ({format_usd(plan.by_hand)} of it by hand)" if plan.by_hand else ""
            line += " (credits expired)" if plan.expired else ""
        else:
            line += f"; refunded {format_usd(r.amount_refunded)}"
        line += "; close the account when paid" if r.close_account else ""
        if r.reason:
            line += f"\n  reason: {shown(r.reason, multiline=True)}"
        if r.decision_reason:
            line += f"\n  note: {shown(r.decision_reason, multiline=True)}"
        click.echo(line)
    if not rows:
        click.echo("no open refund requests" if not include_closed else "no refund requests")


@refunds_cli.command("approve")
@click.argument("request_id", type=int)
def refunds_approve(request_id):
    """Refund a request newest payment first (Stripe, or by hand for manual top-ups); safe to run again."""
    # Not a domain_command: approval commits payment by payment (a Stripe refund cannot be rolled back).
    try:
        result = refund_requests.approve(request_id)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    for p in result.payouts:
        if p.by_hand:
            click.echo(f"to pay back by hand: {format_usd(p.amount)} of payment {p.payment.id} "
                       f"({shown(p.payment.method or 'manual')}{', ' + shown(p.payment.reference) if p.payment.reference else ''})")
        else:
            click.echo(f"refunded {format_usd(p.amount)} of payment {p.payment.id} through Stripe ({p.stripe_refund_id})")
    refund = result.request
    if not result.done:
        raise click.ClickException(f"refund request {request_id} is still open, {format_usd(refund.amount_refunded)} "
                                   f"refunded so far: {result.stopped}")
    if refund.amount_refunded == 0:
        click.echo(f"refund request {request_id} closed as paid with $0.00: {refund.decision_reason}")
    else:
        click.echo(f"refund request {request_id} paid: {format_usd(refund.amount_refunded)} in all")
    if result.closed_account:
        click.echo("the account is closed, as the person asked")
    click.echo(f"mailed {shown(refund.contact_email)}")


@refunds_cli.command("reject")
@click.argument("request_id", type=int)
@click.option("--reason", required=True, help="Why: the person is told it by mail.")
def refunds_reject(request_id, reason):
    """Refuse a refund request; the balance stays and the person is told the reason."""
    try:
        refund = refund_requests.reject(request_id, reason)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"refund request {refund.id} refused; mailed {shown(refund.contact_email)}")
