"""Redeeming a gift code (the form sits on the billing page)."""
from flask import Blueprint

bp = Blueprint("codes", __name__, url_prefix="/billing/codes")
