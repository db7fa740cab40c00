"""Refund requests: a person asks for their unused balance back; the operator pays or refuses.

Life of a request: requested -> paid | refused (the operator's) | cancelled (the user withdrew it,
or accepted the terms after declining them). Only "requested" is open, and an account has at most
one open request (a partial unique index), so asking twice finds the first request. Filing one
stops the account's API keys (the caller revokes them in the same transaction).

What is refundable (`refundable`, the refund policy page says the same in words):
- the available balance (balance minus held, never below zero), but never more than the paid
  payments (Stripe and manual top-ups) have not yet given back (`Payment.unreturned`); gifts,
  codes and grants are spent first, so the unspent money is paid money first;
- rounded down to whole cents, payment by payment (Stripe refunds cents): a sub-cent remainder
  stays on the account;
- nothing once the credits have expired (`Account.credits_expire_at <= now`): expired credit is
  gone, even before the expiry job has written it off. A payment older than the expiry window
  still counts while the credits are unexpired, since it is part of the live balance.

Approval (`approve`) pays that amount back newest payment first: each Stripe payment gets a Stripe
refund of its share; a manual top-up's share becomes a payout marked `by_hand` for the operator
to pay back themselves. Each payment is one transaction of its own: the Stripe refund, the ledger
debit (referenced `stripe:refund:<id>` or `refund-by-hand:<request>:<payment>`), the raise of
`Payment.refunded` and the RefundPayout row. That transaction locks the account's paid payments
first and then the account, so the `charge.refunded` webhook Stripe sends for our own refund waits,
then finds `Payment.refunded` already raised and takes nothing more. A Stripe refund cannot be
undone, so money already sent stays recorded when a later payment fails: the request stays open
with a note, and approving again goes on where it stopped. A retry never refunds twice: the plan
is recomputed from what is committed (a payment already refunded has nothing left to give), the
Stripe idempotency key is `refund-request-<id>-payment-<id>` (a retry after a crash between Stripe
and our commit gets the same refund back), and the ledger reference and the unique
`stripe_refund_id` refuse a second record of it.

Zero refundable (only grants left, credits expired...): approval still closes the request as
paid with $0.00 and tells the person why, rather than leaving it open for ever; the balance stays
on the account (and expires as usual). When the person asked to leave (`close_account`), the
account is closed once the refund is done.
"""
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from flask import render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import audit, i18n, ledger, mail, users  # users imports this module: use it at call time only
from .audit import Actor
from .database import atomic
from .errors import InvalidInput, NotFound
from .extensions import db
from .models import (Account, EntryKind, Payment, PaymentSource, PaymentStatus, RefundPayout, RefundRequest,
                     RefundStatus, User, UserStatus, utcnow)
from .money import format_usd
from .stripe_gateway import MICRO_PER_CENT, StripeUnavailable, cents, gateway

log = logging.getLogger(__name__)
CARD_DAYS = _l("5 to 10 business days")  # Stripe's own estimate of when a card refund shows on a statement


def open_request(user: User) -> Optional[RefundRequest]:
    return db.session.scalar(select(RefundRequest).where(RefundRequest.user_id == user.id,
                                                         RefundRequest.status == RefundStatus.REQUESTED.value))


def latest(user: User) -> Optional[RefundRequest]:
    """The user's most recent request, whatever its status (shown on their account page)."""
    return db.session.scalar(select(RefundRequest).where(RefundRequest.user_id == user.id)
                             .order_by(RefundRequest.id.desc()).limit(1))


OPENED_BY_OPERATOR = "opened by the operator: "  # moderation.open_refund's reason starts so


def reason_words(reason: Optional[str]) -> str:
    """A request's stored reason for a page: what the software wrote in the reader's language."""
    if reason and reason.startswith(OPENED_BY_OPERATOR):
        return _("opened by the operator: %(reason)s", reason=reason[len(OPENED_BY_OPERATOR):])
    return reason or ""


def request(user: User, reason: str, *, close_account: bool = False) -> RefundRequest:
    """File a request for the user's unused balance, or return the one already open.

    `close_account`: the person is leaving; approval closes the account. Asking to leave marks an
    earlier open request too (it never unmarks one).
    """
    refund = open_request(user)
    if refund is None:
        refund = RefundRequest(user_id=user.id, contact_email=user.email, reason=(reason or "").strip()[:2000],
                               balance_at_request=user.account.balance, status=RefundStatus.REQUESTED.value,
                               created_at=utcnow(), close_account=close_account)
        try:
            with db.session.begin_nested():
                db.session.add(refund)
            return refund
        except IntegrityError:  # a parallel request of the same account was first
            refund = open_request(user)
    refund.close_account = refund.close_account or close_account
    return refund


def cancel_open(user: User) -> Optional[RefundRequest]:
    """Cancel the user's open request, if any, and return it; revoked keys stay revoked.

    Once the operator's approval has paid part of it, it is not cancelled (None): the approval
    finishes it.
    """
    # Locked, so an approval paying it meanwhile (which locks it too) is waited for and seen.
    refund = db.session.scalar(select(RefundRequest).where(RefundRequest.user_id == user.id,
                                                           RefundRequest.status == RefundStatus.REQUESTED.value)
                               .with_for_update().execution_options(populate_existing=True))
    if refund is None or refund.amount_refunded:
        return None
    refund.status, refund.resolved_at = RefundStatus.CANCELLED.value, utcnow()
    db.session.flush()
    return refund


# --- what is refundable -------------------------------------------------------------------------

@dataclass(frozen=True)
class Share:
    """One payment's part of a refund."""

    payment: Payment
    amount: int

    @property
    def by_hand(self) -> bool:
        return self.payment.source == PaymentSource.MANUAL.value


@dataclass(frozen=True)
class Refundable:
    shares: list[Share]
    expired: bool = False  # the credits have expired: nothing is refundable

    @property
    def amount(self) -> int:
        return sum(s.amount for s in self.shares)

    @property
    def by_hand(self) -> int:
        return sum(s.amount for s in self.shares if s.by_hand)


def _whole_cents(amount: int) -> int:
    return amount - amount % MICRO_PER_CENT


def _paid_payments(account_id: int, *, lock: bool = False) -> list[Payment]:
    query = (select(Payment).where(Payment.account_id == account_id, Payment.status == PaymentStatus.PAID.value)
             .order_by(Payment.paid_at.desc().nulls_last(), Payment.id.desc()))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return list(db.session.scalars(query))


def _plan(account: Account, payments: list[Payment], now: datetime) -> Refundable:
    if account.credits_expire_at is not None and account.credits_expire_at <= now:
        return Refundable([], expired=True)
    remaining = min(max(account.balance - account.held, 0), sum(p.unreturned for p in payments))
    shares = []
    for payment in payments:  # newest first
        share = min(_whole_cents(remaining), _whole_cents(payment.unreturned))
        if share > 0:
            shares.append(Share(payment, share))
            remaining -= share
    return Refundable(shares)


def refundable(account: Account, now: Optional[datetime] = None) -> Refundable:
    """What approving a request would pay back now, payment by payment (newest first)."""
    return _plan(account, _paid_payments(account.id), now or utcnow())


def preview(request_id: int, now: Optional[datetime] = None) -> Refundable:
    """What approving this request would pay back now, against which payments: the plan `approve`
    computes, read without locks or writes (the console shows it before the operator decides)."""
    refund = db.session.get(RefundRequest, request_id)
    if refund is None:
        raise NotFound(f"there is no refund request {request_id}")
    account = db.session.scalar(select(Account).where(Account.user_id == refund.user_id))
    return refundable(account, now)


# --- the operator's decision ----------------------------------------------------------------------

@dataclass(frozen=True)
class Payout:
    """A share paid back: through Stripe (`stripe_refund_id`) or owed by hand."""

    payment: Payment
    amount: int
    stripe_refund_id: Optional[str]

    @property
    def by_hand(self) -> bool:
        return self.stripe_refund_id is None


@dataclass
class Approval:
    """What `approve` did. `stopped` says why it did not finish (the request is still open)."""

    request: RefundRequest
    payouts: list[Payout] = field(default_factory=list)
    stopped: Optional[str] = None
    closed_account: bool = False

    @property
    def done(self) -> bool:
        return self.stopped is None


def _lock_request(request_id: int) -> RefundRequest:
    refund = db.session.scalar(select(RefundRequest).where(RefundRequest.id == request_id).with_for_update()
                               .execution_options(populate_existing=True))
    if refund is None:
        raise NotFound(f"there is no refund request {request_id}")
    if refund.status != RefundStatus.REQUESTED.value:
        raise InvalidInput(f"refund request {request_id} is {refund.status}, not open: nothing to do")
    return refund


def _locked_plan(refund: RefundRequest, now: datetime) -> Refundable:
    # Payments first, then the account: the webhook locks a payment before it writes the ledger.
    account_id = db.session.scalar(select(Account.id).where(Account.user_id == refund.user_id))
    payments = _paid_payments(account_id, lock=True)
    account = db.session.scalar(select(Account).where(Account.id == account_id).with_for_update()
                                .execution_options(populate_existing=True))
    return _plan(account, payments, now)


def _pay(refund: RefundRequest, share: Share) -> Payout:
    """Refund one payment's share through Stripe (or mark it by hand) and record it: inside atomic()."""
    payment = share.payment
    if share.by_hand:
        refund_id, reference = None, f"refund-by-hand:{refund.id}:{payment.id}"
        memo = f"refund request {refund.id}: to be paid back by hand ({payment.method or 'manual top-up'})"
    else:
        stripe = gateway()
        if stripe is None:
            raise StripeUnavailable("Stripe is not configured (STRIPE_SECRET_KEY)")
        if not payment.payment_intent_id:
            raise StripeUnavailable(f"payment {payment.id} has no Stripe payment intent on record")
        refund_id = stripe.refund(payment_intent=payment.payment_intent_id, amount_cents=cents(share.amount),
                                  idempotency_key=f"refund-request-{refund.id}-payment-{payment.id}",
                                  metadata={"refund_request": str(refund.id)})
        reference, memo = f"stripe:refund:{refund_id}", f"refund request {refund.id}: refunded through Stripe"
    ledger.debit(payment.account_id, share.amount, EntryKind.REFUND, memo=memo, reference=reference)
    payment.refunded += share.amount
    refund.amount_refunded += share.amount
    db.session.add(RefundPayout(refund_request_id=refund.id, payment_id=payment.id, amount=share.amount,
                                stripe_refund_id=refund_id, by_hand=share.by_hand, created_at=utcnow()))
    return Payout(payment, share.amount, refund_id)


def approve(request_id: int, now: Optional[datetime] = None, *, actor: Optional[Actor] = None) -> Approval:
    """Pay back a request's refundable amount, newest payment first; commits payment by payment.

    Manages its own transactions (call it outside atomic()). When Stripe fails, the request stays
    open with a note and the result's `stopped` says why; calling again continues. Each payment's
    transaction records a `refund.payout` audit entry, the closing one `refund.approve` (or
    `refund.stopped`); `actor` defaults to the operator at the command line.
    """
    now = now or utcnow()
    actor = actor or Actor.cli()
    payouts: list[Payout] = []
    while True:
        try:
            with atomic():
                refund = _lock_request(request_id)
                plan = _locked_plan(refund, now)
                if not plan.shares:
                    break
                payout = _pay(refund, plan.shares[0])
                payouts.append(payout)
                audit.record(actor, "refund.payout", "refund_request", refund.id, after={
                    "payment": payout.payment.id, "amount": payout.amount, "by_hand": payout.by_hand,
                    "stripe_refund_id": payout.stripe_refund_id})
        except StripeUnavailable as exc:
            share = plan.shares[0]
            note = (f"stopped at payment {share.payment.id} ({format_usd(share.amount)}): {exc}. "
                    f"Run the approval again to continue; nothing is refunded twice.")
            with atomic():
                refund = _lock_request(request_id)
                refund.decision_reason = note
                audit.record(actor, "refund.stopped", "refund_request", refund.id, reason=note,
                             after={"status": refund.status, "amount_refunded": refund.amount_refunded})
            log.warning("refund request %s: %s", request_id, note)
            return Approval(refund, payouts, stopped=note)
    with atomic():
        refund = _lock_request(request_id)
        refund.status, refund.resolved_at = RefundStatus.PAID.value, utcnow()
        refund.decision_reason = None if refund.amount_refunded else (
            "credits expired" if plan.expired else "nothing refundable")
        user = db.session.get(User, refund.user_id)
        closing = refund.close_account and user.status != UserStatus.TERMINATED.value
        if closing:
            users.terminate(user, "closed after the refund")
        audit.record(actor, "refund.approve", "refund_request", refund.id, reason=refund.decision_reason,
                     before={"status": RefundStatus.REQUESTED.value},
                     after={"status": refund.status, "amount_refunded": refund.amount_refunded,
                            "closed_account": closing})
        all_payouts = _payouts_of(refund.id)
    _mail_paid(refund, all_payouts, plan.expired, refund.close_account)
    return Approval(refund, payouts, closed_account=closing)


def payouts(request_id: int) -> list[Payout]:
    """What a request has paid back so far, payment by payment, in the order it was paid."""
    return _payouts_of(request_id)


def _payouts_of(request_id: int) -> list[Payout]:
    rows = db.session.scalars(select(RefundPayout).where(RefundPayout.refund_request_id == request_id)
                              .order_by(RefundPayout.id))
    return [Payout(db.session.get(Payment, r.payment_id), r.amount, r.stripe_refund_id) for r in rows]


def reject(request_id: int, reason: str, *, actor: Optional[Actor] = None) -> RefundRequest:
    """Refuse a request with a reason the person is told; the balance stays and keys stay revoked.

    Audited as `refund.reject`; `actor` defaults to the operator at the command line.
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("give the reason for refusing: the person is told it", field="reason")
    with atomic():
        refund = _lock_request(request_id)
        refund.status, refund.resolved_at, refund.decision_reason = RefundStatus.REFUSED.value, utcnow(), reason
        audit.record(actor or Actor.cli(), "refund.reject", "refund_request", refund.id, reason=reason,
                     before={"status": RefundStatus.REQUESTED.value}, after={"status": refund.status})
        closed = db.session.get(User, refund.user_id).status == UserStatus.TERMINATED.value
    with mail.localized(_locale(refund.user_id)):
        mail.send(refund.contact_email, _("Your refund request was declined"),
                  render_template("mail/refund_refused.txt", refund=refund, closed=closed))
    return refund


def _locale(user_id: int) -> Optional[str]:
    """The language the person chose, for mail about their refund (mail.localized)."""
    return db.session.scalar(select(User.locale).where(User.id == user_id))


def _mail_paid(refund: RefundRequest, payouts: list[Payout], expired: bool, closed: bool) -> None:
    with mail.localized(_locale(refund.user_id)):
        subject = (_("Your refund of %(amount)s", amount=i18n.usd(refund.amount_refunded)) if refund.amount_refunded
                   else _("Your refund request: nothing to refund"))
        mail.send(refund.contact_email, subject, render_template(
            "mail/refund_paid.txt", refund=refund, by_stripe=[p for p in payouts if not p.by_hand],
            by_hand=[p for p in payouts if p.by_hand], expired=expired, closed=closed,
            card_days=str(CARD_DAYS)))


# --- the operator's list ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    request: RefundRequest
    refundable: Optional[Refundable]  # for open requests: what approval would pay now


def listing(include_closed: bool = False, now: Optional[datetime] = None) -> list[Row]:
    """Refund requests for the operator: open ones first (oldest first), then the rest newest first."""
    now = now or utcnow()
    open_rows = db.session.scalars(select(RefundRequest).where(RefundRequest.status == RefundStatus.REQUESTED.value)
                                   .order_by(RefundRequest.id))
    rows = []
    for refund in open_rows:
        account = db.session.scalar(select(Account).where(Account.user_id == refund.user_id))
        rows.append(Row(refund, refundable(account, now)))
    if include_closed:
        rows += [Row(r, None) for r in db.session.scalars(
            select(RefundRequest).where(RefundRequest.status != RefundStatus.REQUESTED.value)
            .order_by(RefundRequest.id.desc()))]
    return rows
