"""Automatic top-up: charge the card a person saved, with nobody present, when their balance runs low.

Opt-in twice over: a Checkout top-up with "save my card" ticked keeps the card (Stripe's
`setup_future_usage=off_session`; the webhook stores the customer and card here, `save_card`),
and the person turns automatic top-up on with a threshold, an amount and a monthly ceiling.

Rules:
- A charge that leaves the balance under the threshold queues `attempt` on the background
  sender, after the charge commits: no call waits for Stripe.
- `attempt` claims the right to charge with ONE conditional UPDATE of the account: on, a card
  saved, owner active, available balance under the threshold, no attempt in the past hour, and
  this UTC month's automatic top-ups (pending or paid, by creation) plus the amount within the
  ceiling. Across threads and processes one claim wins per hour: Postgres re-checks the WHERE on
  the row once the winner commits (its `last_attempt_at` is then too recent); SQLite writers
  queue. The pending Payment is inserted in the same transaction, so the next claim counts it.
- Stripe is called after that commit with the idempotency key `autotopup:{payment id}`; only the
  webhook (`payment_intent.succeeded`, payments.py) credits, like every other top-up.
- A refused card, whether Stripe says so at once or later (`payment_intent.payment_failed`),
  marks the payment failed, turns automatic top-up off and mails the owner.

The hot path: the ledger's settle says whether the account has it on and is under its threshold
(`Entry.auto_topup_due`, from the same UPDATE's RETURNING), so no call runs an extra query for it.
"""
import logging
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Callable, Optional

from flask import Flask, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, func, or_, select

from . import i18n, links, mail, notices, sitesettings, stripe_gateway, topups
from .database import atomic
from .errors import InvalidAmount
from .extensions import db
from .models import Account, Payment, PaymentSource, PaymentStatus, User, UserStatus, utcnow
from .money import format_usd

log = logging.getLogger(__name__)

MIN_INTERVAL = timedelta(hours=1)
MAX_SETTING = 1_000_000_000_000  # $1,000,000: beyond any real threshold or ceiling
_QUIET_SECONDS = 60.0   # after queueing an attempt, the same account's calls queue none for this long

_account, _payment = Account.__table__, Payment.__table__
_MONTH_SO_FAR = (select(func.coalesce(func.sum(_payment.c.amount), 0))
                 .where(_payment.c.account_id == bindparam("account_id"), _payment.c.auto_topup.is_(True),
                        _payment.c.status.in_([PaymentStatus.PENDING.value, PaymentStatus.PAID.value]),
                        _payment.c.created_at >= bindparam("month_start", type_=_payment.c.created_at.type)))
_CLAIM = (_account.update()
          .where(_account.c.id == bindparam("account_id"),
                 _account.c.auto_topup_enabled.is_(True),
                 _account.c.auto_topup_payment_method.is_not(None),
                 _account.c.stripe_customer_id.is_not(None),
                 _account.c.user_id.in_(select(User.id).where(User.status == UserStatus.ACTIVE.value)),
                 _account.c.balance - _account.c.held < _account.c.auto_topup_threshold,
                 or_(_account.c.auto_topup_last_attempt_at.is_(None),
                     _account.c.auto_topup_last_attempt_at <= bindparam("hour_ago", type_=_account.c.created_at.type)),
                 _MONTH_SO_FAR.scalar_subquery() + _account.c.auto_topup_amount
                 <= _account.c.auto_topup_monthly_limit)
          .values(auto_topup_last_attempt_at=bindparam("now", type_=_account.c.created_at.type))
          .returning(_account.c.auto_topup_amount, _account.c.stripe_customer_id,
                     _account.c.auto_topup_payment_method))


# -- the trigger, on the hot path --------------------------------------------------------------

def after_charge(app: Flask, account_id: int) -> bool:
    """Queue an automatic top-up attempt for an account whose charge left it under its threshold.

    Called after the charge committed, when settle said `auto_topup_due`. Calls in a burst queue
    one attempt a minute per process; the attempt's claim allows one charge an hour anyway.
    """
    quiet_until = app.extensions.setdefault("autotopup_quiet_until", {})  # account id -> monotonic time
    now = time.monotonic()
    if quiet_until.get(account_id, 0.0) > now:
        return False
    quiet_until[account_id] = now + _QUIET_SECONDS
    notices.later(app, partial(attempt, account_id))
    return True


# -- the charge ----------------------------------------------------------------------------------

def month_start(now: datetime) -> datetime:
    """The first moment of `now`'s calendar month, UTC."""
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def attempt(account_id: int, now: Optional[datetime] = None) -> str:
    """Charge the saved card once if every rule allows it now; return what happened, in a line."""
    gateway = stripe_gateway.gateway()
    if gateway is None:
        return "skipped: Stripe is not configured"
    now = now or utcnow()
    with atomic():
        claim = db.session.connection().execute(_CLAIM, dict(
            account_id=account_id, now=now, hour_ago=now - MIN_INTERVAL, month_start=month_start(now))).first()
        if claim is None:
            return "skipped: off, no card, balance not low, charged within the hour, or the monthly ceiling"
        amount, customer, payment_method = claim
        payment = Payment(account_id=account_id, source=PaymentSource.STRIPE.value, status=PaymentStatus.PENDING.value,
                          amount=amount, method="card", refunded=0, disputed=0, created_at=now, auto_topup=True)
        db.session.add(payment)
        db.session.flush()
        payment_id = payment.id
    try:
        intent_id, status = gateway.charge_saved_card(
            customer=customer, payment_method=payment_method, amount_cents=stripe_gateway.cents(amount),
            idempotency_key=f"autotopup:{payment_id}",
            metadata={"auto_topup": "true", "account_id": str(account_id), "payment_id": str(payment_id)},
            description=f"{sitesettings.site_name()} automatic top-up, {format_usd(amount)}")
    except stripe_gateway.CardDeclined as exc:
        return _failed_now(payment_id, str(exc), exc.payment_intent)
    except stripe_gateway.StripeUnavailable as exc:
        # Whether Stripe charged is unknown; the webhook credits the intent if it did. Auto
        # top-up stays on and the hour rule spaces out the next try.
        with atomic():
            db.session.execute(_payment.update().where(_payment.c.id == payment_id,
                                                       _payment.c.status == PaymentStatus.PENDING.value)
                               .values(status=PaymentStatus.FAILED.value, failure=f"Stripe: {exc}"[:500]))
        log.warning("auto top-up of account %s (payment #%s): Stripe unavailable: %s", account_id, payment_id, exc)
        return f"failed: Stripe unavailable ({exc})"
    if status not in ("succeeded", "processing"):
        return _failed_now(payment_id, f"the card needs its holder to confirm the payment ({status})", intent_id)
    with atomic():
        db.session.execute(_payment.update().where(_payment.c.id == payment_id,
                                                   _payment.c.payment_intent_id.is_(None))
                           .values(payment_intent_id=intent_id))
    log.info("auto top-up of account %s: charged %s (payment #%s, %s, %s)", account_id, format_usd(amount),
             payment_id, intent_id, status)
    return f"charged: {format_usd(amount)} ({intent_id}, {status}); the webhook credits it"


def _failed_now(payment_id: int, reason: str, intent_id: Optional[str]) -> str:
    with atomic():
        payment = db.session.scalars(select(Payment).where(Payment.id == payment_id).with_for_update()
                                     .execution_options(populate_existing=True)).one()
        if intent_id and not payment.payment_intent_id:
            payment.payment_intent_id = intent_id
        acted = record_failure(payment, reason)
        to = notices.recipient(payment.account_id) if acted else None
        amount, account_id = payment.amount, payment.account_id
        locale = notices.locale(account_id) if to is not None else None
    if to is not None:
        send_failure_mail(to, amount, reason, locale)
    log.info("auto top-up of account %s refused by the card: %s", account_id, reason)
    return f"declined: {reason}; automatic top-up turned off"


def record_failure(payment: Payment, reason: str) -> bool:
    """Mark a pending automatic top-up failed and turn automatic top-up off; False if it was settled already.

    Call within atomic(), the payment row locked. The caller mails the owner when this returns True.
    """
    if payment.status != PaymentStatus.PENDING.value:
        return False  # credited meanwhile, or this failure was already handled (mailed once)
    payment.status, payment.failure = PaymentStatus.FAILED.value, reason[:500]
    db.session.execute(_account.update().where(_account.c.id == payment.account_id)
                       .values(auto_topup_enabled=False))
    return True


def failure_mail(amount: int, reason: str) -> tuple[str, Callable[[], str], dict]:
    """The template, subject (written when sent, in the recipient's language) and context of the
    mail saying an automatic top-up failed."""
    return ("mail/auto_topup_failed.txt",
            lambda: _("Your automatic top-up of %(amount)s failed", amount=i18n.usd(amount)),
            {"amount": amount, "reason": reason})


def send_failure_mail(to: str, amount: int, reason: str, locale: Optional[str] = None) -> None:
    """Mail `to` (whose language is `locale`) that an automatic top-up failed and was turned off."""
    template, subject, context = failure_mail(amount, reason)
    with mail.localized(locale):
        mail.send(to, subject(), render_template(template, billing=links.public_url("billing.index"), **context))


# -- the card --------------------------------------------------------------------------------

def save_card(account_id: int, details: Optional[stripe_gateway.PaymentDetails]) -> str:
    """Keep the card a paid Checkout Session saved; return a note for the event's outcome. Within atomic()."""
    if details is None or not details.customer or not details.payment_method:
        return "; the card was not saved: Stripe did not name the customer and card"
    db.session.execute(_account.update().where(_account.c.id == account_id).values(
        stripe_customer_id=details.customer[:255], auto_topup_payment_method=details.payment_method[:255],
        auto_topup_card=(details.card or "card")[:64]))
    return f"; saved {details.card or 'the card'} for automatic top-ups"


def forget_card(account: Account) -> None:
    """Forget the saved card and turn automatic top-up off; remove the card at Stripe too, if it answers."""
    with atomic():
        payment_method = db.session.scalar(select(Account.auto_topup_payment_method)
                                           .where(Account.id == account.id))
        db.session.execute(_account.update().where(_account.c.id == account.id).values(
            auto_topup_payment_method=None, auto_topup_card=None, auto_topup_enabled=False))
        db.session.expire(account)
    gateway = stripe_gateway.gateway()
    if payment_method and gateway is not None:
        try:
            gateway.detach_card(payment_method)
        except stripe_gateway.StripeUnavailable as exc:
            # Forgotten here all the same: nothing of ours charges it any more.
            log.warning("auto top-up: could not detach %s at Stripe: %s", payment_method, exc)


# -- settings ----------------------------------------------------------------------------------

class InvalidSettings(InvalidAmount):
    """Some automatic top-up settings are wrong: `problems` says what, by field, all at once (the
    message and field are the first of them)."""

    def __init__(self, problems: dict[str, str]):
        field, message = next(iter(problems.items()))
        super().__init__(message, field=field)
        self.problems = problems


def configure(account: Account, *, enabled: bool, threshold: Optional[int], amount: Optional[int],
              monthly_limit: Optional[int]) -> None:
    """Save the person's automatic top-up settings, or raise InvalidSettings naming every wrong field.

    Fields: "auto_threshold" (0 to MAX_SETTING), "auto_amount" (a top-up amount, topups.amount_problem),
    "auto_limit" (at least the amount, at most MAX_SETTING). None (nothing that reads as an amount)
    is wrong everywhere. Call within atomic().
    """
    problems = {}
    if not _money(threshold) or threshold > MAX_SETTING:
        problems["auto_threshold"] = _l("Enter an amount in US dollars up to %(max)s, like 5 or 2.50.",
                                        max=topups.dollars(MAX_SETTING))
    amount_problem = topups.amount_problem(amount)
    if amount_problem is not None:
        problems["auto_amount"] = amount_problem
    if not _money(monthly_limit) or monthly_limit > MAX_SETTING:
        problems["auto_limit"] = _l("Enter an amount in US dollars up to %(max)s, like 100 or 250.",
                                    max=topups.dollars(MAX_SETTING))
    elif amount_problem is None and monthly_limit < amount:
        problems["auto_limit"] = _l("Enter at least one top-up (%(amount)s), like 100: the monthly ceiling must "
                                    "allow one charge.", amount=i18n.usd(amount))
    if problems:
        raise InvalidSettings(problems)
    db.session.execute(_account.update().where(_account.c.id == account.id).values(
        auto_topup_enabled=bool(enabled), auto_topup_threshold=threshold, auto_topup_amount=amount,
        auto_topup_monthly_limit=monthly_limit))
    db.session.expire(account)


def _money(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def charged_this_month(account_id: int, now: Optional[datetime] = None) -> int:
    """What automatic top-ups took (or are taking) this UTC month: what counts against the ceiling."""
    return int(db.session.execute(_MONTH_SO_FAR, dict(account_id=account_id,
                                                      month_start=month_start(now or utcnow()))).scalar())
