"""The statement: every ledger entry with running balances, as a page, CSV and JSON (with the hash chain)."""
from flask import Blueprint, Response, render_template, request, stream_with_context, url_for
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user, login_required

from .. import statement
from ..models import EntryKind, utcnow

bp = Blueprint("statement", __name__, url_prefix="/statement")

# statement.LABELS in the page's language (the downloads keep the English, a stable format).
LABELS = {
    EntryKind.TOPUP.value: _l("Top-up"), EntryKind.GRANT.value: _l("Credit"), EntryKind.CHARGE.value: _l("Usage"),
    EntryKind.REFUND.value: _l("Refund"), EntryKind.DISPUTE.value: _l("Disputed payment"),
    EntryKind.EXPIRY.value: _l("Credits expired"), EntryKind.ADJUSTMENT.value: _l("Adjustment"),
}


def describe(row: statement.Row) -> tuple[str, str]:
    """A row's label and its memo (what the entry itself says, as written) for the page."""
    if row.calls:
        return ngettext("Usage: %(num)d call", "Usage: %(num)d calls", row.calls), ""
    english = statement.LABELS.get(row.kind, row.kind)
    memo = row.description[len(english) + 2:] if row.description.startswith(english + ": ") else ""
    memo = statement.memo_words(memo) if memo else ""
    return str(LABELS.get(row.kind, row.kind)), memo


@bp.get("/")
@login_required
def index():
    # ?format= as well as the file URLs, so a link with either form downloads.
    match request.args.get("format"):
        case "csv":
            return csv_download()
        case "json":
            return json_download()
    found = statement.build(current_user.account.id)
    return render_template("statement/index.html", statement=found, rows=list(reversed(found.rows)),
                           csv_url=url_for("statement.csv_download"), json_url=url_for("statement.json_download"),
                           verify_script=statement.VERIFY_SCRIPT, describe=describe)


def _download(chunks, mimetype: str, extension: str) -> Response:
    response = Response(stream_with_context(chunks), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="statement-{utcnow().date().isoformat()}.{extension}"'
    response.headers["Cache-Control"] = "private, no-store"  # a person's money: no shared cache keeps it
    return response


@bp.get("/statement.csv")
@login_required
def csv_download():
    return _download(statement.csv_lines(current_user.account.id), "text/csv", "csv")


@bp.get("/statement.json")
@login_required
def json_download():
    return _download(statement.json_chunks(current_user.account.id), "application/json", "json")
