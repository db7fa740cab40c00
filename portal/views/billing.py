"""Billing: balance and expiry, top-ups through Stripe Checkout, past top-ups and their receipts."""
from flask import Blueprint

bp = Blueprint("billing", __name__, url_prefix="/billing")


@bp.get("/")
def index():
    return "billing: to be written", 501
