"""The statement: every ledger entry with running balances, as a page, CSV and JSON (with the hash chain)."""
from flask import Blueprint

bp = Blueprint("statement", __name__, url_prefix="/statement")


@bp.get("/")
def index():
    return "statement: to be written", 501
