"""Money that comes in from outside: Stripe's webhook events and manual top-ups.

Each Stripe event is applied once: its id is inserted (the StripeEvent primary key) first in
the transaction that applies its effect, so a redelivery, or the same event delivered eight
times at once, finds the id taken and changes nothing. On SQLite the writers queue behind
BEGIN IMMEDIATE; on Postgres the second INSERT of the id waits for the first transaction and
then fails on the key, which means "already handled".

Money rules, all through the ledger:
- A paid Checkout Session credits `amount_total` once (reference `stripe:checkout:{session}`,
  whichever of `completed` and `async_payment_succeeded` comes first) and moves the expiry.
- A refund made in Stripe debits only the part not yet accounted for: Stripe's running total
  `amount_refunded` minus `Payment.refunded`. Operator-approved refunds (refunds.py) raise
  `Payment.refunded` in their own transaction while holding the payment row, and so do we
  here, so the same money is never taken twice.
- A dispute suspends the user, debits what of the payment has not gone back yet and flags the
  event for the operator; closing it (won or lost) restores nothing by itself.
- Refunds and disputes are clawed back even into a negative balance: the money has left.

Mail goes out only after the transaction that decided it commits.
"""
import logging
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Callable, Optional

from flask import render_template
from flask_babel import gettext as _
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from . import autotopup, i18n, ledger, links, mail, metrics, notices, refunds, users
from .database import atomic
from .errors import InvalidAmount, InvalidInput, ReferenceConflict
from .extensions import db
from .models import (Account, EntryKind, LedgerEntry, Payment, PaymentSource, PaymentStatus, RefundRequest,
                     StripeEvent, User, UserStatus, utcnow)
from .money import format_usd
from .stripe_gateway import CURRENCY, PaymentDetails, StripeUnavailable, details_of, gateway, micro

log = logging.getLogger(__name__)

DUPLICATE = "duplicate: this event was already handled"
_ATTEMPTS = 3  # a transaction that lost a race on another unique row is run again from the start


@dataclass
class Effect:
    """What handling one event did, as recorded on its StripeEvent row."""

    outcome: str
    account_id: Optional[int] = None
    flagged: bool = False
    mail: Optional[tuple[str, str, dict]] = None  # (template, subject, context), sent after commit
    credited: int = 0  # micro-dollars a paid top-up credited, counted in metrics after commit


# -- the webhook -----------------------------------------------------------------------------

def handle_event(event: dict) -> str:
    """Apply one verified Stripe event exactly once; return what was done, in a line."""
    event_id, kind, obj = _parts(event)
    if _recorded(event_id):
        return DUPLICATE
    details = _details_before(kind, obj)  # Stripe's API is called outside any write transaction
    for attempt in range(_ATTEMPTS):
        try:
            with atomic():
                if db.session.get(StripeEvent, event_id) is not None:
                    return DUPLICATE
                record = StripeEvent(id=event_id, type=kind[:100], outcome="", flagged=False, received_at=utcnow())
                db.session.add(record)
                db.session.flush()  # first: a concurrent delivery of the same event stops here
                effect = _dispatch(kind, obj, details)
                record.outcome, record.account_id, record.flagged = effect.outcome, effect.account_id, effect.flagged
        except IntegrityError:
            db.session.rollback()
            if _recorded(event_id):
                return DUPLICATE
            if attempt == _ATTEMPTS - 1:
                raise
            continue  # e.g. two events of one session both created its Payment: the loser starts over
        log.info("stripe event %s (%s): %s", event_id, kind, effect.outcome)
        metrics.topped_up(effect.credited)
        if effect.mail is not None:
            _send(*effect.mail)
        return effect.outcome
    raise AssertionError("unreachable")


def _parts(event) -> tuple[str, str, dict]:
    """The id, type and object of an event, or InvalidInput when it is not shaped like one."""
    try:
        event_id, kind, obj = event["id"], event["type"], event["data"]["object"]
    except (KeyError, TypeError):
        raise InvalidInput("this is not a Stripe event (id, type or data.object is missing)") from None
    if not (isinstance(event_id, str) and event_id and len(event_id) <= 255 and isinstance(kind, str)
            and isinstance(obj, dict)):
        raise InvalidInput("this is not a Stripe event (id, type or data.object is malformed)")
    return event_id, kind, obj


def _recorded(event_id: str) -> bool:
    if db.session().in_transaction():
        db.session.commit()  # as atomic() does: end an older snapshot, see what is committed now
    return db.session.scalar(select(StripeEvent.id).where(StripeEvent.id == event_id)) is not None


def _paid(kind: str, obj: dict) -> bool:
    return (kind == "checkout.session.async_payment_succeeded"
            or (kind == "checkout.session.completed" and obj.get("payment_status") == "paid"))


def _details_before(kind: str, obj: dict) -> Optional[PaymentDetails]:
    """Receipt, invoice, charge of a paid session: asked of Stripe, else what the event itself says."""
    if not kind.startswith("checkout.session."):
        return None
    own = details_of(obj)
    stripe = gateway()
    if not _paid(kind, obj) or stripe is None or not isinstance(obj.get("id"), str):
        return own
    try:
        fetched = stripe.payment_details(obj["id"])
    except StripeUnavailable as exc:
        log.warning("stripe: no payment details for session %s (%s); using the event's", obj["id"], exc)
        return own
    return PaymentDetails(*(getattr(fetched, f.name) or getattr(own, f.name) for f in fields(PaymentDetails)))


def _dispatch(kind: str, obj: dict, details: Optional[PaymentDetails]) -> Effect:
    match kind:
        case "checkout.session.completed" | "checkout.session.async_payment_succeeded" if _paid(kind, obj):
            return _session_paid(obj, details)
        case "checkout.session.completed":
            return _session_unpaid(obj, details)
        case "checkout.session.async_payment_failed":
            return _session_failed(obj, details, "the payment failed", mail_user=True)
        case "checkout.session.expired":
            return _session_failed(obj, details, "the checkout session expired unpaid", mail_user=False)
        case "charge.refunded":
            return _charge_refunded(obj)
        case "charge.dispute.created":
            return _dispute_created(obj)
        case "charge.dispute.closed":
            return _dispute_closed(obj)
        case "payment_intent.succeeded":
            return _intent_succeeded(obj)
        case "payment_intent.payment_failed":
            return _intent_failed(obj)
        case _:
            return Effect("ignored: not an event this portal acts on")


# -- Checkout Sessions -------------------------------------------------------------------------

def _locked(*conditions) -> Optional[Payment]:
    """The payment matching any of `conditions`, its row locked until commit (FOR UPDATE on Postgres).

    refunds.py locks the same row before it refunds, so the two never compute from the same
    `refunded`. On SQLite atomic() already holds the database's write lock.
    """
    conditions = [c for c in conditions if c is not None]
    if not conditions:
        return None
    return db.session.scalars(select(Payment).where(or_(*conditions)).order_by(Payment.id).limit(1)
                              .with_for_update().execution_options(populate_existing=True)).first()


def _metadata_account(obj: dict) -> Optional[int]:
    """The existing account a session's metadata names, or None."""
    raw = (obj.get("metadata") or {}).get("account_id")
    try:
        account_id = int(raw)
    except (TypeError, ValueError):
        return None
    return account_id if db.session.get(Account, account_id) is not None else None


def _session_payment(obj: dict, status: PaymentStatus) -> tuple[Optional[Payment], Optional[Effect]]:
    """The session's Payment (locked), created from its metadata when missing; or the Effect of refusing it."""
    session_id = obj.get("id")
    if not isinstance(session_id, str) or not session_id:
        return None, Effect("flagged: a checkout session without an id; nothing credited", flagged=True)
    payment = _locked(Payment.checkout_session_id == session_id)
    account_id = payment.account_id if payment is not None else _metadata_account(obj)
    if account_id is None:
        return None, Effect(f"flagged: unknown account for session {session_id}; nothing credited", flagged=True)
    currency, total = obj.get("currency"), obj.get("amount_total")
    if currency != CURRENCY or not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        return None, Effect(f"flagged: session {session_id} is {total!r} {currency!r}, not a positive USD amount; "
                            "nothing credited", account_id, flagged=True)
    if payment is None:
        payment = Payment(account_id=account_id, source=PaymentSource.STRIPE.value, status=status.value,
                          amount=micro(total), checkout_session_id=session_id, refunded=0, disputed=0,
                          created_at=utcnow())
        db.session.add(payment)
        db.session.flush()  # a concurrent event of the same session loses here and starts over
    return payment, None


def _fill(payment: Payment, details: Optional[PaymentDetails]) -> None:
    if details is None:
        return
    payment.payment_intent_id = payment.payment_intent_id or details.payment_intent
    payment.charge_id = payment.charge_id or details.charge
    payment.method = payment.method or (details.method or "")[:32] or None
    payment.receipt_url = payment.receipt_url or details.receipt_url
    payment.invoice_url = payment.invoice_url or details.invoice_url
    payment.card_fingerprint = payment.card_fingerprint or details.card_fingerprint


def _session_paid(obj: dict, details: Optional[PaymentDetails]) -> Effect:
    payment, refused = _session_payment(obj, PaymentStatus.PENDING)
    if refused is not None:
        return refused
    session_id, paid = obj["id"], micro(obj["amount_total"])
    if payment.status == PaymentStatus.PAID.value:
        return Effect(f"already credited: session {session_id} (payment #{payment.id})", payment.account_id)
    note, flagged = "", False
    if payment.amount != paid:
        # Stripe says what was paid; the row said what was asked. Credit what arrived, and say so.
        note, flagged = f" (the top-up was for {format_usd(payment.amount)}; flagged)", True
        payment.amount = paid
    now = utcnow()
    entry = ledger.credit(payment.account_id, paid, EntryKind.TOPUP, reference=f"stripe:checkout:{session_id}",
                          memo=f"top-up by Stripe Checkout (payment #{payment.id})", topup_at=now)
    payment.status, payment.paid_at, payment.failure = PaymentStatus.PAID.value, now, None
    _fill(payment, details)
    note, flagged = _catch_up(payment, details, note, flagged)
    if (obj.get("metadata") or {}).get("save_card") == "true":
        note += autotopup.save_card(payment.account_id, details)
    account = db.session.get(Account, payment.account_id)
    context = {"amount": paid, "balance": entry.balance_after, "expires_at": account.credits_expire_at,
               "months": ledger.VALIDITY_MONTHS, "receipt_url": payment.receipt_url,
               "invoice_url": payment.invoice_url}
    return Effect(f"credited {format_usd(paid)} to account {payment.account_id} for session {session_id}{note}",
                  payment.account_id, flagged, credited=paid,
                  mail=_mail_for(payment.account_id, "mail/topup_paid.txt",
                                 lambda: _("Your top-up of %(amount)s has arrived", amount=i18n.usd(paid)), context))


def _catch_up(payment: Payment, details: Optional[PaymentDetails], note: str, flagged: bool) -> tuple[str, bool]:
    """Apply what the charge says went back before this credit (events arrive in any order).

    A `charge.refunded` that came first matched no payment and took nothing; the charge's running
    total tells it now, under the same reference that event would use, so nothing is taken twice.
    A dispute that came first is not measurable here: the user is suspended and it is flagged.
    """
    if details is None or not payment.charge_id:
        return note, flagged
    if details.amount_refunded and _take_refunded(payment, payment.charge_id, details.amount_refunded):
        note += f"; {format_usd(payment.refunded)} of it was already refunded in Stripe and is debited"
    if details.disputed:
        user = _owner(payment.account_id)
        if user.status == UserStatus.ACTIVE.value:
            users.suspend(user, f"payment #{payment.id} is disputed with the bank; the operator will review it")
        note, flagged = note + "; the charge is disputed: the user is suspended (flagged)", True
    return note, flagged


def _take_refunded(payment: Payment, charge_id: str, refunded_cents: int) -> int:
    """Debit what of Stripe's running refund total has not been taken yet; return the amount debited."""
    # Only what we have not taken back yet is new, and never more than what of the payment is
    # still with us (refunded + disputed <= amount).
    new = min(micro(refunded_cents) - payment.refunded, payment.unreturned)
    if new <= 0:
        return 0
    ledger.claw_back(payment.account_id, new, EntryKind.REFUND,
                     memo=f"refund made in Stripe (payment #{payment.id}, charge {charge_id})",
                     reference=f"stripe:charge-refunded:{charge_id}:{refunded_cents}")
    payment.refunded += new
    return new


def _owner(account_id: int) -> User:
    return db.session.scalar(select(User).join(Account, Account.user_id == User.id).where(Account.id == account_id))


def _session_unpaid(obj: dict, details: Optional[PaymentDetails]) -> Effect:
    payment, refused = _session_payment(obj, PaymentStatus.PENDING)
    if refused is not None:
        return refused
    _fill(payment, details)
    # A delayed method (a bank debit, say): the money is on its way; async_payment_succeeded credits
    # it. The payer is told now, so a balance that has not moved yet is no surprise.
    mail_args = _mail_for(payment.account_id, "mail/topup_pending.txt",
                          lambda: _("Your top-up of %(amount)s is on its way", amount=i18n.usd(payment.amount)),
                          {"amount": payment.amount, "method": payment.method})
    return Effect(f"pending: session {obj['id']} completed but not paid yet ({obj.get('payment_status')}); "
                  "nothing credited", payment.account_id, mail=mail_args)


def _session_failed(obj: dict, details: Optional[PaymentDetails], why: str, *, mail_user: bool) -> Effect:
    payment, refused = _session_payment(obj, PaymentStatus.FAILED)
    if refused is not None:
        return refused
    if payment.status == PaymentStatus.PAID.value:
        return Effect(f"flagged: {why} for session {obj['id']}, which was already credited; nothing changed",
                      payment.account_id, flagged=True)
    payment.status, payment.failure = PaymentStatus.FAILED.value, why
    _fill(payment, details)
    mail_args = None
    if mail_user:
        mail_args = _mail_for(payment.account_id, "mail/topup_failed.txt",
                              lambda: _("Your top-up of %(amount)s did not go through",
                                        amount=i18n.usd(payment.amount)),
                              {"amount": payment.amount, "method": payment.method})
    return Effect(f"failed: {why} (session {obj['id']}); nothing credited", payment.account_id, mail=mail_args)


# -- automatic top-ups (autotopup.py): PaymentIntents charged off-session --------------------------

_NOT_AUTO = ("ignored: not an automatic top-up (a Checkout Session's payment is credited by the session's "
             "events)")


def _auto_payment(obj: dict) -> tuple[Optional[Payment], Optional[Effect]]:
    """The automatic top-up (locked) an intent's id or metadata names; or the Effect of ignoring or refusing it.

    Only intents whose metadata says `auto_topup` and whose row is an automatic top-up of the
    account the metadata names: a Checkout Session's intent is never credited twice this way.
    """
    metadata = obj.get("metadata") or {}
    if metadata.get("auto_topup") != "true":
        return None, Effect(_NOT_AUTO)
    intent_id = obj.get("id") if isinstance(obj.get("id"), str) and obj.get("id") else None
    raw = str(metadata.get("payment_id") or "")
    payment_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 16 else None
    payment = _locked(Payment.payment_intent_id == intent_id if intent_id else None,
                      Payment.id == payment_id if payment_id is not None else None)
    if payment is None or not payment.auto_topup or str(payment.account_id) != str(metadata.get("account_id")):
        return None, Effect(f"flagged: no automatic top-up matches payment intent {intent_id}; nothing done",
                            payment.account_id if payment is not None else None, flagged=True)
    if intent_id and payment.payment_intent_id not in (None, intent_id):
        return None, Effect(f"flagged: payment #{payment.id} belongs to intent {payment.payment_intent_id}, not "
                            f"{intent_id}; nothing done", payment.account_id, flagged=True)
    payment.payment_intent_id = payment.payment_intent_id or intent_id
    return payment, None


def _intent_succeeded(obj: dict) -> Effect:
    payment, refused = _auto_payment(obj)
    if refused is not None:
        return refused
    intent_id, currency, received = obj["id"], obj.get("currency"), obj.get("amount_received")
    if currency != CURRENCY or not isinstance(received, int) or isinstance(received, bool) or received <= 0:
        return Effect(f"flagged: intent {intent_id} is {received!r} {currency!r}, not a positive USD amount; "
                      "nothing credited", payment.account_id, flagged=True)
    if payment.status == PaymentStatus.PAID.value:
        return Effect(f"already credited: intent {intent_id} (payment #{payment.id})", payment.account_id)
    paid, note, flagged = micro(received), "", False
    if payment.status == PaymentStatus.FAILED.value:
        # Marked failed when Stripe could not be reached, yet the charge went through: the money arrived.
        note, flagged = f" (it was marked failed: {payment.failure}; flagged)", True
    if payment.amount != paid:
        note, flagged = note + f" (the top-up was for {format_usd(payment.amount)}; flagged)", True
        payment.amount = paid
    now = utcnow()
    entry = ledger.credit(payment.account_id, paid, EntryKind.TOPUP, reference=f"stripe:payment_intent:{intent_id}",
                          memo=f"automatic top-up (payment #{payment.id})", topup_at=now)
    payment.status, payment.paid_at, payment.failure = PaymentStatus.PAID.value, now, None
    charge = obj.get("latest_charge")
    payment.charge_id = payment.charge_id or (charge if isinstance(charge, str) else (charge or {}).get("id"))
    account = db.session.get(Account, payment.account_id)
    context = {"amount": paid, "balance": entry.balance_after, "expires_at": account.credits_expire_at,
               "months": ledger.VALIDITY_MONTHS, "receipt_url": None, "invoice_url": None}
    return Effect(f"credited {format_usd(paid)} to account {payment.account_id} for automatic top-up "
                  f"(intent {intent_id}){note}", payment.account_id, flagged, credited=paid,
                  mail=_mail_for(payment.account_id, "mail/topup_paid.txt",
                                 lambda: _("Your automatic top-up of %(amount)s has arrived", amount=i18n.usd(paid)),
                                 context))


def _intent_failed(obj: dict) -> Effect:
    payment, refused = _auto_payment(obj)
    if refused is not None:
        return refused
    if payment.status == PaymentStatus.PAID.value:
        return Effect(f"flagged: intent {obj['id']} failed after payment #{payment.id} was credited; nothing changed",
                      payment.account_id, flagged=True)
    reason = str((obj.get("last_payment_error") or {}).get("message") or "the card was declined")[:300]
    if not autotopup.record_failure(payment, reason):
        return Effect(f"already failed: intent {obj['id']} (payment #{payment.id}); nothing changed",
                      payment.account_id)
    return Effect(f"failed: automatic top-up of account {payment.account_id} (intent {obj['id']}): {reason}; "
                  "turned off", payment.account_id,
                  mail=_mail_for(payment.account_id, *autotopup.failure_mail(payment.amount, reason)))


# -- refunds and disputes made in Stripe --------------------------------------------------------

def _charge_payment(charge_id, payment_intent) -> Optional[Payment]:
    charge_id = charge_id if isinstance(charge_id, str) and charge_id else None
    payment_intent = payment_intent if isinstance(payment_intent, str) and payment_intent else None
    payment = _locked(Payment.charge_id == charge_id if charge_id else None,
                      Payment.payment_intent_id == payment_intent if payment_intent else None)
    if payment is not None and charge_id and not payment.charge_id:
        payment.charge_id = charge_id
    return payment


def _cents(obj: dict, name: str) -> Optional[int]:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or obj.get("currency", CURRENCY) != CURRENCY:
        return None
    return value


def _charge_refunded(obj: dict) -> Effect:
    charge_id = obj.get("id")
    payment = _charge_payment(charge_id, obj.get("payment_intent"))
    if payment is None:
        return Effect(f"flagged: no payment matches refunded charge {charge_id}; nothing debited", flagged=True)
    refunded_cents = _cents(obj, "amount_refunded")
    if refunded_cents is None:
        return Effect(f"flagged: charge {charge_id} has no USD amount_refunded; nothing debited",
                      payment.account_id, flagged=True)
    # Stripe sends the running total (see _take_refunded).
    new = _take_refunded(payment, charge_id, refunded_cents)
    if not new:
        return Effect(f"nothing new: {format_usd(micro(refunded_cents))} of charge {charge_id} refunded, "
                      f"{format_usd(payment.refunded)} already debited", payment.account_id)
    return Effect(f"debited {format_usd(new)} refunded in Stripe from account {payment.account_id} "
                  f"(charge {charge_id}, {format_usd(payment.refunded)} refunded in all)", payment.account_id)


def _dispute_created(obj: dict) -> Effect:
    dispute_id, charge_id = obj.get("id"), obj.get("charge")
    charge_id = charge_id.get("id") if isinstance(charge_id, dict) else charge_id
    payment = _charge_payment(charge_id, obj.get("payment_intent"))
    if payment is None:
        return Effect(f"flagged: dispute {dispute_id} on charge {charge_id}, which no payment matches; "
                      "nothing debited", flagged=True)
    payment.dispute_status = str(obj.get("status") or "needs_response")[:32]
    reason = obj.get("reason") or "no reason given"
    user = _owner(payment.account_id)
    if user.status != UserStatus.TERMINATED.value:
        users.suspend(user, f"payment #{payment.id} is disputed with the bank (Stripe dispute {dispute_id}, "
                            f"{reason}); the operator will review it")
    reference = f"stripe:dispute:{dispute_id}"
    disputed_cents = _cents(obj, "amount")
    taken = 0
    if disputed_cents is not None and not _entry_exists(reference):
        taken = min(micro(disputed_cents), payment.unreturned)
        if taken > 0:
            ledger.claw_back(payment.account_id, taken, EntryKind.DISPUTE, reference=reference,
                             memo=f"payment #{payment.id} disputed (Stripe dispute {dispute_id})")
            payment.disputed += taken
    return Effect(f"dispute {dispute_id} ({reason}) on payment #{payment.id}: debited {format_usd(taken)}, "
                  f"user {user.status}; review it in Stripe", payment.account_id, flagged=True)


def _dispute_closed(obj: dict) -> Effect:
    dispute_id, charge_id = obj.get("id"), obj.get("charge")
    charge_id = charge_id.get("id") if isinstance(charge_id, dict) else charge_id
    payment = _charge_payment(charge_id, obj.get("payment_intent"))
    status = str(obj.get("status") or "closed")[:32]
    if payment is None:
        return Effect(f"flagged: dispute {dispute_id} closed ({status}) on charge {charge_id}, which no payment "
                      "matches", flagged=True)
    payment.dispute_status = status
    # Nothing is restored here: whether to credit a won dispute back, or lift the suspension,
    # is the operator's decision (`credits grant`, `users unsuspend`).
    return Effect(f"dispute {dispute_id} on payment #{payment.id} closed: {status}; nothing restored "
                  "automatically", payment.account_id, flagged=True)


def _entry_exists(reference: str) -> bool:
    return db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.reference == reference)) is not None


# -- mail --------------------------------------------------------------------------------------

def _mail_for(account_id: int, template: str, subject: Callable[[], str],
              context: dict) -> Optional[tuple[str, Callable[[], str], dict]]:
    """What to mail the account's owner after the commit; the subject is written then, in their language."""
    to = notices.recipient(account_id)
    if to is None:
        return None  # a closed account: its address is gone
    return template, subject, dict(context, to=to, locale=notices.locale(account_id))


def _send(template: str, subject: Callable[[], str], context: dict) -> None:
    with mail.localized(context["locale"]):
        body = render_template(template, billing=links.public_url("billing.index"), **context)
        mail.send(context["to"], subject(), body)


# -- manual top-ups --------------------------------------------------------------------------

def manual_reference(reference: str) -> str:
    """The ledger reference of the manual top-up the operator named `reference`."""
    return f"manual:{reference}"


def record_manual_topup(user: User, amount: int, reference: str, method: Optional[str] = None) -> Payment:
    """Record money paid in by hand (bank transfer, cash) as a paid top-up; once per `reference`.

    Unlike a grant it moves the expiry and counts as paid in. Call within atomic().
    """
    reference = (reference or "").strip()
    if not reference or len(reference) > 200:
        raise InvalidInput("a manual top-up needs a --reference (the transfer's or receipt's number), "
                           "at most 200 characters", field="reference")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0 or amount % micro(1):
        raise InvalidAmount(f"a top-up must be a positive whole number of cents, got {format_usd(amount)}")
    method = ((method or "").strip() or "bank transfer")[:32]
    earlier = manual_payment(reference)
    if earlier is None:
        now = utcnow()
        payment = Payment(account_id=user.account.id, source=PaymentSource.MANUAL.value,
                          status=PaymentStatus.PAID.value, amount=amount, reference=reference, method=method,
                          refunded=0, disputed=0, created_at=now, paid_at=now)
        try:
            with db.session.begin_nested():
                db.session.add(payment)
        except IntegrityError:  # the same reference recorded a moment ago by another run
            earlier = manual_payment(reference)
            if earlier is None:
                raise
    if earlier is not None:
        if (earlier.account_id, earlier.amount) != (user.account.id, amount):
            raise ReferenceConflict(f"reference {reference!r} was already used for {format_usd(earlier.amount)} "
                                    f"to account {earlier.account_id}")
        return earlier
    ledger.credit(user.account.id, amount, EntryKind.TOPUP, reference=manual_reference(reference),
                  memo=f"top-up by {method} (reference {reference})", topup_at=payment.paid_at)
    return payment


def manual_payment(reference: str) -> Optional[Payment]:
    """The manual top-up recorded under `reference`, if any."""
    return db.session.scalar(select(Payment).where(Payment.reference == reference.strip()))


# -- what the operator sees ----------------------------------------------------------------------

def paid_in_past_year(account_id: int, now: Optional[datetime] = None) -> tuple[int, int]:
    """Paid top-ups within the 12 calendar months before `now`: (gross, net of refunds and disputes).

    The gross figure is what the terms cap the operator's liability at.
    """
    now = now or utcnow()
    since = ledger.add_months(now, -ledger.VALIDITY_MONTHS)
    gross, net = db.session.execute(
        select(func.coalesce(func.sum(Payment.amount), 0),
               func.coalesce(func.sum(Payment.amount - Payment.refunded - Payment.disputed), 0))
        .where(Payment.account_id == account_id, Payment.status == PaymentStatus.PAID.value,
               Payment.paid_at >= since, Payment.paid_at <= now)).one()
    return int(gross), int(net)


@dataclass(frozen=True)
class Overview:
    """A user's money as `users show` prints it."""

    user: User
    account: Account
    paid_gross: int
    paid_net: int
    open_refund: Optional[RefundRequest]
    flagged: list[StripeEvent] = field(default_factory=list)
    disputed: list[Payment] = field(default_factory=list)


def overview(user: User, now: Optional[datetime] = None) -> Overview:
    """Everything `users show` needs about `user`'s balance, payments and open questions."""
    account = user.account
    gross, net = paid_in_past_year(account.id, now)
    flagged = list(db.session.scalars(select(StripeEvent).where(StripeEvent.account_id == account.id,
                                                                StripeEvent.flagged.is_(True))
                                      .order_by(StripeEvent.received_at)))
    disputed = list(db.session.scalars(select(Payment).where(Payment.account_id == account.id,
                                                             Payment.dispute_status.is_not(None))
                                       .order_by(Payment.id)))
    return Overview(user, account, gross, net, refunds.open_request(user), flagged, disputed)
