"""Asking for the unused balance back, from the billing page."""
from flask import Blueprint

bp = Blueprint("refunds", __name__, url_prefix="/billing/refund")
