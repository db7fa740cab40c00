"""Stripe's webhook: the raw body verified, then handed to payments.handle_event."""
from flask import Blueprint

bp = Blueprint("webhooks", __name__)
