"""Stripe behind a small gateway: the only module that talks to Stripe's API.

The app holds one `StripeGateway` (or None when Stripe is not configured), built from the
configuration; tests point it at a fake of Stripe's HTTP API on loopback (STRIPE_API_BASE), so
the same stripe-python code runs against it. Webhook events come the other way and are handled
in payments.py; their signature is checked here, on the raw body.

Amounts: the gateway speaks Stripe's smallest currency unit (cents for USD); callers convert
from micro-USD with `cents()` and `micro()`, which refuse anything that is not whole cents.
"""
from dataclasses import dataclass
from typing import Optional

import stripe
from flask import Flask, current_app

CURRENCY = "usd"
MICRO_PER_CENT = 10_000


class StripeUnavailable(Exception):
    """Stripe could not be reached or refused the request; the message is safe to show."""


class CardDeclined(Exception):
    """The bank refused an off-session charge (declined, or it wants the payer present); Stripe's message."""

    def __init__(self, message: str, code: Optional[str] = None, payment_intent: Optional[str] = None):
        super().__init__(message)
        self.code = code
        self.payment_intent = payment_intent


def cents(micro_usd: int) -> int:
    if micro_usd % MICRO_PER_CENT:
        raise ValueError(f"{micro_usd} micro-USD is not a whole number of cents")
    return micro_usd // MICRO_PER_CENT


def micro(amount_cents: int) -> int:
    return int(amount_cents) * MICRO_PER_CENT


@dataclass(frozen=True)
class Checkout:
    id: str
    url: str


@dataclass(frozen=True)
class PaymentDetails:
    """What a paid Checkout Session settled into: for receipts and for matching refunds and disputes."""

    payment_intent: Optional[str]
    charge: Optional[str]
    method: Optional[str]
    receipt_url: Optional[str]
    invoice_url: Optional[str]
    # A session that saved its card for automatic top-ups: the customer and the card (pm_...).
    customer: Optional[str] = None
    payment_method: Optional[str] = None
    card: Optional[str] = None  # "visa •••• 4242"
    # What the charge says has already gone back: events can arrive out of order, and a refund or
    # dispute may be older than the event that credits the payment.
    amount_refunded: int = 0  # cents, Stripe's running total
    disputed: bool = False
    # Stripe's fingerprint of the card: the same card has the same one on every account (signals.py).
    card_fingerprint: Optional[str] = None


def _id(value) -> Optional[str]:
    """An expandable field's id, whether Stripe sent the id or the expanded object."""
    if value is None or isinstance(value, str):
        return value
    return value.get("id")


class StripeGateway:
    def __init__(self, secret_key: str, api_base: str = ""):
        # Bounded waits (stripe-python's default is 80 s a try): a refund approval calls Stripe while
        # it holds the payment's row, and on SQLite the write lock that every settlement waits for.
        self.client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else None, max_network_retries=1,
            http_client=stripe.RequestsClient(timeout=(5, 20)))

    def create_checkout(self, *, account_id: int, user_id: int, email: str, amount_cents: int,
                        methods: tuple[str, ...], success_url: str, cancel_url: str, description: str,
                        idempotency_key: str, save_card: bool = False,
                        customer: Optional[str] = None) -> Checkout:
        """A Checkout Session (mode payment) for one top-up; the webhook credits it when paid.

        `save_card` keeps the card for off-session charges (automatic top-ups): card only, on the
        account's Stripe `customer`, or a new one Stripe creates.
        """
        metadata = {"account_id": str(account_id), "user_id": str(user_id), "amount_cents": str(amount_cents)}
        intent_data = {"metadata": metadata, "description": description}
        if save_card:
            metadata["save_card"] = "true"
            methods = ("card",)
            intent_data["setup_future_usage"] = "off_session"
        params = {
            "mode": "payment",
            "payment_method_types": list(methods),
            "line_items": [{"quantity": 1, "price_data": {
                "currency": CURRENCY, "unit_amount": amount_cents, "product_data": {"name": description}}}],
            "client_reference_id": str(account_id),
            "metadata": metadata,
            "payment_intent_data": intent_data,
            "invoice_creation": {"enabled": True, "invoice_data": {"metadata": metadata}},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        # Stripe takes either an existing customer or an address (and then makes one if asked).
        if customer:
            params["customer"] = customer
        else:
            params["customer_email"] = email
            if save_card:
                params["customer_creation"] = "always"
        if "wechat_pay" in methods:
            params["payment_method_options"] = {"wechat_pay": {"client": "web"}}
        try:
            session = self.client.v1.checkout.sessions.create(
                params=params, options={"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise StripeUnavailable(_message(exc)) from None
        return Checkout(session.id, session.url)

    def payment_details(self, session_id: str) -> PaymentDetails:
        """The payment behind a paid session, with its receipt and invoice links."""
        try:
            session = self.client.v1.checkout.sessions.retrieve(
                session_id, params={"expand": ["payment_intent.latest_charge", "payment_intent.payment_method",
                                               "invoice"]})
        except stripe.StripeError as exc:
            raise StripeUnavailable(_message(exc)) from None
        return details_of(session.to_dict())

    def refund(self, *, payment_intent: str, amount_cents: int, idempotency_key: str, metadata: dict) -> str:
        """Refund part of a payment; returns the refund's id. The key makes a retry refund once."""
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": payment_intent, "amount": amount_cents, "metadata": metadata},
                options={"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise StripeUnavailable(_message(exc)) from None
        return refund.id

    def charge_saved_card(self, *, customer: str, payment_method: str, amount_cents: int, idempotency_key: str,
                          metadata: dict, description: str = "") -> tuple[str, str]:
        """Charge a saved card with nobody present (confirm, off_session); return (intent id, status).

        Raises CardDeclined when the bank refuses (declined, or it asks for authentication the
        absent payer cannot give), StripeUnavailable for anything else.
        """
        try:
            intent = self.client.v1.payment_intents.create(params={
                "amount": amount_cents, "currency": CURRENCY, "customer": customer, "payment_method": payment_method,
                "confirm": True, "off_session": True, "payment_method_types": ["card"], "metadata": metadata,
                "description": description}, options={"idempotency_key": idempotency_key})
        except stripe.CardError as exc:
            error = (exc.json_body or {}).get("error") or {}
            raise CardDeclined(_message(exc), getattr(exc, "code", None),
                               _id(error.get("payment_intent"))) from None
        except stripe.StripeError as exc:
            raise StripeUnavailable(_message(exc)) from None
        return intent.id, intent.status

    def detach_card(self, payment_method: str) -> None:
        """Remove a saved card from its Stripe customer, so it can never be charged again."""
        try:
            self.client.v1.payment_methods.detach(payment_method)
        except stripe.StripeError as exc:
            raise StripeUnavailable(_message(exc)) from None


def details_of(session: dict) -> PaymentDetails:
    """PaymentDetails from a session as a plain dict, its payment intent and invoice expanded or not."""
    intent = session.get("payment_intent")
    charge = intent.get("latest_charge") if isinstance(intent, dict) else None
    invoice = session.get("invoice")
    expanded_charge = charge if isinstance(charge, dict) else {}
    method = intent.get("payment_method") if isinstance(intent, dict) else None
    return PaymentDetails(
        payment_intent=_id(intent), charge=_id(charge),
        method=(expanded_charge.get("payment_method_details") or {}).get("type"),
        receipt_url=expanded_charge.get("receipt_url"),
        invoice_url=invoice.get("hosted_invoice_url") if isinstance(invoice, dict) else None,
        customer=_id(session.get("customer")), payment_method=_id(method),
        card=card_label((method or {}).get("card") if isinstance(method, dict) else None)
        or card_label((expanded_charge.get("payment_method_details") or {}).get("card")),
        amount_refunded=_whole(expanded_charge.get("amount_refunded")),
        disputed=expanded_charge.get("disputed") is True,
        card_fingerprint=_fingerprint((expanded_charge.get("payment_method_details") or {}).get("card"))
        or _fingerprint((method or {}).get("card") if isinstance(method, dict) else None))


def _fingerprint(card: Optional[dict]) -> Optional[str]:
    value = card.get("fingerprint") if isinstance(card, dict) else None
    return value[:64] if isinstance(value, str) and value else None


def _whole(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def card_label(card: Optional[dict]) -> Optional[str]:
    """A card for display, such as "visa •••• 4242", from its brand and last four digits; or None."""
    if not isinstance(card, dict) or not card.get("last4"):
        return None
    return f"{card.get('brand') or 'card'} •••• {card['last4']}"[:64]


def _message(exc: "stripe.StripeError") -> str:
    # Stripe's own user_message when it has one; never the request, which carries the key.
    return getattr(exc, "user_message", None) or "Stripe could not complete the request"


def verify_event(payload: bytes, signature: Optional[str], secret: str) -> "stripe.Event":
    """The event in a webhook body, if the Stripe-Signature header signs it with `secret` (within 5 minutes).

    Raises ValueError (not JSON) or stripe.SignatureVerificationError (missing, wrong or stale).
    """
    return stripe.Webhook.construct_event(payload, signature or "", secret)


def init_app(app: Flask) -> None:
    secret = app.config.get("STRIPE_SECRET_KEY")
    app.extensions["stripe_gateway"] = (StripeGateway(secret, app.config.get("STRIPE_API_BASE", ""))
                                        if secret else None)


def gateway() -> Optional[StripeGateway]:
    """The app's gateway, or None when Stripe is not configured."""
    return current_app.extensions.get("stripe_gateway")
