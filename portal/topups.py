"""Top-ups through Stripe Checkout: start one, list past ones, the figures the billing page shows.

A top-up is a Checkout Session (mode `payment`) and a pending Payment row naming it. Nothing
here credits anything: the webhook (payments.py) credits the Payment it finds by session id once
Stripe says it is paid, so the success URL a browser comes back to, and its query, decide nothing.

The Stripe request is made before the Payment row is written and outside any transaction, so no
write lock is held while Stripe answers; a failed request leaves no row, and a row written
after a session that is then never paid simply stays pending (the webhook marks it failed when
Stripe expires the session).

What was paid in the past 12 months (the figure the terms cap liability at) is
payments.paid_in_past_year, shared with the operator's `users show`.
"""
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Optional

from babel.numbers import format_currency
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from . import sitesettings, stripe_gateway
from .database import atomic
from .errors import DomainError, InvalidAmount
from .extensions import db
from .i18n import language, usd
from .models import Account, Payment, PaymentSource, PaymentStatus, User, UserStatus, utcnow
from .money import MICRO, format_usd

HISTORY_LIMIT = 200


class TopupsUnavailable(DomainError):
    """Card top-ups cannot be started: Stripe is not configured, or did not take the request."""


class TopupRefused(DomainError):
    """This person may not top up (yet): unverified address, suspended or closed account."""


def limits() -> tuple[int, int]:
    """The operator's smallest and largest top-up, in micro-USD."""
    return current_app.config["TOPUP_MIN"], current_app.config["TOPUP_MAX"]


def presets() -> tuple[int, ...]:
    """The amounts offered as one-click buttons, in micro-USD."""
    return tuple(current_app.config["TOPUP_PRESETS"])


def methods() -> tuple[str, ...]:
    """The payment methods Checkout offers (STRIPE_PAYMENT_METHODS)."""
    return tuple(current_app.config["STRIPE_PAYMENT_METHODS"])


def can_save_card() -> bool:
    """True when a top-up can save its card for automatic top-ups (Stripe on, cards offered)."""
    return available() and "card" in methods()


def available() -> bool:
    """True when card top-ups can be started (Stripe is configured)."""
    return stripe_gateway.gateway() is not None


def dollars(micro: int) -> str:
    """A bound as people say it: "$5" for whole dollars, else exact ("$12.50"); in the reader's language."""
    if micro % MICRO:
        return usd(micro)
    return format_currency(Decimal(micro // MICRO), "USD", locale=language(), format="¤#,##0", currency_digits=False)


def amount_problem(amount_micro: Optional[int]) -> Optional[str]:
    """What is wrong with a top-up amount (None: nothing), in words that say what to type.

    The one rule for every top-up amount: TOPUP_MIN..TOPUP_MAX, whole cents. None (nothing that
    reads as an amount was typed) is refused like an amount out of range.
    """
    low, high = limits()
    if not isinstance(amount_micro, int) or isinstance(amount_micro, bool) or not low <= amount_micro <= high:
        return _l("Enter an amount in US dollars between %(low)s and %(high)s, like 20 or 12.50.",
                  low=dollars(low), high=dollars(high))
    if amount_micro % stripe_gateway.MICRO_PER_CENT:
        return _l("Enter whole cents, like 12.50: %(amount)s cannot be paid by card.", amount=usd(amount_micro))
    return None


def check_amount(amount_micro: Optional[int]) -> None:
    """Refuse (InvalidAmount, field "amount") an amount that `amount_problem` finds wrong."""
    problem = amount_problem(amount_micro)
    if problem is not None:
        raise InvalidAmount(problem, field="amount")


def _check_user(user: User) -> None:
    if user.status != UserStatus.ACTIVE.value:
        raise TopupRefused(_l("This account is suspended or closed, so it cannot be topped up. "
                              "Write to us from the contact page if you think this is a mistake."))
    if not user.is_verified:
        raise TopupRefused(_l("Confirm your email address before topping up: we sent you a link."))


def start_checkout(user: User, amount_micro: int, *, success_url: str, cancel_url: str,
                   save_card: bool = False) -> stripe_gateway.Checkout:
    """Open a Checkout Session for `amount_micro` and record it as a pending Payment; the caller redirects.

    `save_card` asks Stripe to keep the card for automatic top-ups (card only; the webhook
    stores it on the account once the session is paid). Raises InvalidAmount (field "amount"),
    TopupRefused, or TopupUnavailable (no Stripe, or Stripe refused; nothing is recorded then).
    """
    check_amount(amount_micro)
    _check_user(user)
    if save_card and "card" not in methods():
        raise TopupsUnavailable(_l("Cards are not offered on this site, so none can be saved for automatic top-ups."))
    gateway = stripe_gateway.gateway()
    if gateway is None:
        raise TopupsUnavailable(_l("Card top-ups are not configured on this site."))
    account_id = user.account.id
    amount_cents = stripe_gateway.cents(amount_micro)
    try:
        # A new key per attempt: it only makes stripe-python's own retries of this one request
        # create one session, while a person who tries again gets a new session.
        checkout = gateway.create_checkout(
            account_id=account_id, user_id=user.id, email=user.email, amount_cents=amount_cents,
            methods=methods(), success_url=success_url, cancel_url=cancel_url,
            description=f"{sitesettings.site_name()} credit, {format_usd(amount_micro)}",
            idempotency_key=f"checkout:{account_id}:{uuid.uuid4().hex}",
            save_card=save_card, customer=user.account.stripe_customer_id)
    except stripe_gateway.StripeUnavailable as exc:
        raise TopupsUnavailable(_l("The payment could not be started: %(reason)s. Nothing was charged; "
                                   "try again in a few minutes.", reason=str(exc))) from None
    with atomic():
        db.session.add(Payment(account_id=account_id, source=PaymentSource.STRIPE.value,
                               status=PaymentStatus.PENDING.value, amount=amount_micro,
                               checkout_session_id=checkout.id))
    return checkout


def history(account_id: int, limit: int = HISTORY_LIMIT) -> list[Payment]:
    """The account's payments (paid, pending, failed; Stripe and manual), newest first."""
    return list(db.session.scalars(select(Payment).where(Payment.account_id == account_id)
                                   .order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit)))


def own_payment(account_id: int, session_id: Optional[str]) -> Optional[Payment]:
    """The account's payment for Checkout Session `session_id`, or None (someone else's looks the same)."""
    if not session_id:
        return None
    return db.session.scalar(select(Payment).where(Payment.checkout_session_id == session_id,
                                                   Payment.account_id == account_id))


@dataclass(frozen=True)
class Standing:
    """What the dashboard and billing page say about an account's balance."""

    expired: bool       # the credits' date has passed: no call starts until a top-up
    low: bool           # the available balance is at or below zero, or under the alert threshold
    expires_at: Optional[datetime]

    @property
    def needs_topup(self) -> bool:
        return self.expired or self.low


def standing(account: Account, now: Optional[datetime] = None) -> Standing:
    """Whether the account should be pointed at the billing page, and why."""
    now = now or utcnow()
    expires_at = account.credits_expire_at
    expired = expires_at is not None and expires_at <= now
    low = account.available <= 0 or account.available < account.low_balance_threshold
    return Standing(expired=expired, low=low, expires_at=expires_at)
