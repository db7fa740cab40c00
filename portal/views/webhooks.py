"""Stripe's webhook: the raw body verified, then handed to payments.handle_event.

Any answer but 2xx makes Stripe deliver the event again later, so only an event that is
recorded (now or before) gets 200; a bad signature gets 400 and an unexpected failure 500.
"""
import json
import logging

import stripe
from flask import Blueprint, current_app, jsonify, request

from .. import payments
from ..errors import InvalidInput
from ..stripe_gateway import verify_event

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)


def _refuse(message: str):
    return jsonify(error=message), 400


def _verify(payload: bytes, signature, secrets: str) -> None:
    # While a signing secret is rolled (Stripe keeps the old one valid for up to a day), the
    # setting may hold both, comma-separated: a body signed with either is accepted.
    candidates = [s.strip() for s in secrets.split(",") if s.strip()]
    for candidate in candidates[:-1]:
        try:
            verify_event(payload, signature, candidate)
            return
        except stripe.SignatureVerificationError:
            continue
    verify_event(payload, signature, candidates[-1])


@bp.post("/stripe/webhook")
def stripe_webhook():
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        return _refuse("webhooks are not configured")
    payload = request.get_data()  # the raw bytes: the signature is over them, not over parsed JSON
    try:
        _verify(payload, request.headers.get("Stripe-Signature"), secret)
        event = json.loads(payload)  # the verified bytes as plain dicts, whatever stripe-python builds from them
    except stripe.SignatureVerificationError:
        log.warning("stripe webhook: refused a body whose signature does not verify")
        return _refuse("the Stripe-Signature header is missing, wrong or too old for this body")
    except (ValueError, AttributeError, TypeError):  # not JSON, or JSON that is not an object
        return _refuse("the body is not a Stripe event")
    try:
        payments.handle_event(event)
    except InvalidInput as exc:
        return _refuse(str(exc))
    return jsonify(received=True)
