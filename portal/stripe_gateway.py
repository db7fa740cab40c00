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


def _id(value) -> Optional[str]:
    """An expandable field's id, whether Stripe sent the id or the expanded object."""
    if value is None or isinstance(value, str):
        return value
    return value.get("id")


class StripeGateway:
    def __init__(self, secret_key: str, api_base: str = ""):
        self.client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else None, max_network_retries=2)

    def create_checkout(self, *, account_id: int, user_id: int, email: str, amount_cents: int,
                        methods: tuple[str, ...], success_url: str, cancel_url: str, description: str,
                        idempotency_key: str) -> Checkout:
        """A Checkout Session (mode payment) for one top-up; the webhook credits it when paid."""
        metadata = {"account_id": str(account_id), "user_id": str(user_id), "amount_cents": str(amount_cents)}
        params = {
            "mode": "payment",
            "payment_method_types": list(methods),
            "line_items": [{"quantity": 1, "price_data": {
                "currency": CURRENCY, "unit_amount": amount_cents, "product_data": {"name": description}}}],
            "customer_email": email,
            "client_reference_id": str(account_id),
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata, "description": description},
            "invoice_creation": {"enabled": True, "invoice_data": {"metadata": metadata}},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
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
                session_id, params={"expand": ["payment_intent.latest_charge", "invoice"]})
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


def details_of(session: dict) -> PaymentDetails:
    """PaymentDetails from a session as a plain dict, its payment intent and invoice expanded or not."""
    intent = session.get("payment_intent")
    charge = intent.get("latest_charge") if isinstance(intent, dict) else None
    invoice = session.get("invoice")
    expanded_charge = charge if isinstance(charge, dict) else {}
    return PaymentDetails(
        payment_intent=_id(intent), charge=_id(charge),
        method=(expanded_charge.get("payment_method_details") or {}).get("type"),
        receipt_url=expanded_charge.get("receipt_url"),
        invoice_url=invoice.get("hosted_invoice_url") if isinstance(invoice, dict) else None)


def _message(exc: "stripe.StripeError") -> str:
    # Stripe's own user_message when it has one; never the request, which carries the key.
    return getattr(exc, "user_message", None) or "Stripe could not complete the request"


def verify_event(payload: bytes, signature: Optional[str], secret: str) -> dict:
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
