"""What users sent the operator: inbox messages|handle|reply|refunds|payments, refunds list|approve|reject,
announce send|status."""

import time

import click
from flask import current_app
from sqlalchemy import select

from .. import announcements, inbox, moderation
from .. import refunds as refund_requests
from ..audit import Actor
from ..database import atomic
from ..errors import DomainError
from ..extensions import db
from ..models import Account, RefundRequest, StripeEvent, User
from ..money import format_usd
from . import announce_cli, domain_command, inbox_cli, refunds_cli, shown


@inbox_cli.command("messages")
@click.option("--limit", default=20, show_default=True, help="How many: open ones first, newest first.")
@click.option("--category", type=click.Choice(list(inbox.CATEGORIES)), help="Only this kind of message.")
@click.option("--state", type=click.Choice(inbox.STATES), default="all", show_default=True,
              help="Open ones, handled ones, or both.")
def inbox_messages(limit, category, state):
    """Show contact-form messages and abuse reports, open ones first."""
    rows = db.session.scalars(inbox.queue(category=category or "", state=state).limit(limit)).all()
    for m in rows:
        handled = f"handled by {shown(m.handled_by)}" if m.handled_at else "open"
        line = (f"#{m.id} {m.created_at:%Y-%m-%d %H:%M} [{m.category}, {handled}] {shown(m.email)} ({shown(m.ip)}) "
                f"— {shown(m.subject)}")
        if m.reference:
            owners = inbox.reported_owners(m)
            line += f"\n  concerns {shown(m.reference)}" + (
                f": key of {', '.join(shown(u.email) for u in owners)}" if owners else "")
        replies = inbox.replies(m.id)
        line += f"\n  {shown(m.message, multiline=True)}"
        if replies:
            line += f"\n  ({len(replies)} repl{'y' if len(replies) == 1 else 'ies'}, the last {replies[-1].created_at:%Y-%m-%d %H:%M})"
        click.echo(line)
    if not rows:
        click.echo("no messages")


@domain_command(inbox_cli, "handle")
@click.argument("message_id", type=int)
@click.option("--reopen", is_flag=True, help="Mark it open again instead.")
def inbox_handle(message_id, reopen):
    """Mark a contact message handled (or open again)."""
    if inbox.set_handled(message_id, not reopen, Actor.cli()):
        click.echo(f"message {message_id} is {'open again' if reopen else 'handled'}")
    else:
        click.echo(f"message {message_id} was already {'open' if reopen else 'handled'}: nothing changed")


@inbox_cli.command("reply")
@click.argument("message_id", type=int)
@click.option("--body-file", type=click.File("r", encoding="utf-8"), required=True,
              help="The reply, plain text ('-' reads it from standard input).")
@click.option("--keep-open", is_flag=True, help="Do not mark the message handled.")
def inbox_reply(message_id, body_file, keep_open):
    """Reply by mail to a contact message from the site's address; the reply is kept with the message."""
    # Not a domain_command: the reply is committed before the mail goes (inbox.reply manages it).
    try:
        inbox.reply(message_id, body_file.read(), Actor.cli(), handled=not keep_open)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    message = inbox.get(message_id)
    click.echo(f"replied to message {message_id}; mailed {shown(message.email)}"
               + ("" if keep_open else "; marked handled"))


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





@domain_command(refunds_cli, "open")
@click.argument("email")
@click.option("--reason", required=True, help="Why (the person asked by mail, say): kept in the audit log.")
def refunds_open(email, reason):
    """Open a refund request for a user's unused paid balance on their behalf; then `refunds approve ID`."""
    outcome, request_id = moderation.open_refund(Actor.cli(), moderation.find_person(email), reason)
    click.echo(outcome.message)


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
        result = refund_requests.approve(request_id, actor=Actor.cli())
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
        refund = refund_requests.reject(request_id, reason, actor=Actor.cli())
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"refund request {refund.id} refused; mailed {shown(refund.contact_email)}")


@announce_cli.command("send")
@click.option("--subject", required=True, help="One line.")
@click.option("--body-file", type=click.File("r", encoding="utf-8"), required=True,
              help="The message, plain text ('-' reads it from standard input).")
@click.option("--audience", type=click.Choice(list(announcements.AUDIENCES)), required=True,
              help=f"all: every verified account not closed; active: active, verified, with a call or a top-up "
                   f"in the last {announcements.ACTIVE_DAYS} days.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def announce_send(subject, body_file, audience, yes):
    """Queue an announcement; the server (`serve`) mails it in the background, throttled."""
    body = body_file.read()
    try:
        people = announcements.count(audience)
        if not yes:
            click.confirm(f"Mail {shown(inbox.one_line(subject))!r} to {people} people ({audience})?", abort=True)
        with atomic():
            row = announcements.create(subject, body, audience, Actor.cli())
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"announcement {row.id} queued for {row.recipients} people; `serve` sends it, "
               f"{current_app.config['ANNOUNCE_PER_MINUTE']} a minute at most (see `announce status`)")


@announce_cli.command("run")
def announce_run():
    """Send unfinished announcements now, in the foreground, at ANNOUNCE_PER_MINUTE: for sites that
    serve the app some other way than `serve` (whose background sender does this by itself)."""
    pause, me, sent = 60 / current_app.config["ANNOUNCE_PER_MINUTE"], announcements.worker_id(), 0
    while announcements.step(me, 1):
        sent += 1
        time.sleep(pause)  # the same throttle as the background sender
    db.session.remove()
    left = sum(announcements.progress(a).left for a in db.session.scalars(announcements.listing()))
    click.echo(f"sent {sent} mail(s)" + (f"; {left} still to send by another process that holds the lease"
                                         if left else "; nothing left to send"))


@announce_cli.command("status")
@click.option("--limit", default=10, show_default=True, help="How many, newest first.")
def announce_status(limit):
    """Show announcements and how far their sending got."""
    rows = db.session.scalars(announcements.listing().limit(limit)).all()
    for a in rows:
        p = announcements.progress(a)
        state = f"finished {a.finished_at:%Y-%m-%d %H:%M}" if a.finished_at else (
            f"sending ({shown(a.worker)})" if a.worker else "waiting for the server to send it")
        click.echo(f"#{a.id} {a.created_at:%Y-%m-%d %H:%M} [{a.audience}] {shown(a.subject)} — {p.sent} of "
                   f"{a.recipients} sent" + (f", {p.skipped} skipped (closed since)" if p.skipped else "")
                   + f"; {state}")
    if not rows:
        click.echo("no announcements")
