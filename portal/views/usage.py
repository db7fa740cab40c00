"""Usage: every call, filtered and paginated; CSV export streamed; a receipt per call."""
import csv
import io
from datetime import date

from flask import Blueprint, Response, abort, render_template, request, stream_with_context, url_for
from flask_login import current_user, login_required

from .. import apikeys, catalog, usage
from ..money import format_usd
from .htmx import render

bp = Blueprint("usage", __name__, url_prefix="/usage")
CSV_COLUMNS = ["time", "request_id", "key", "model", "status", "input_tokens", "output_tokens",
               "cache_read_tokens", "cache_write_tokens", "cost_usd", "cost_micro_usd", "estimated", "duration_ms"]


def _date(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


def _int(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() else None


def _filters() -> usage.Filters:
    return usage.Filters(key_id=_int("key"), model_id=_int("model"), start=_date("start"), end=_date("end"))


def _query_args(filters: usage.Filters) -> dict:
    args = {"key": filters.key_id, "model": filters.model_id, "start": filters.start, "end": filters.end}
    return {k: v for k, v in args.items() if v}


@bp.get("/")
@login_required
def index():
    filters = _filters()
    number = max(1, _int("page") or 1)
    rows, more = usage.page(current_user.account.id, filters, number)
    args = _query_args(filters)
    return render("usage/index.html", "results", rows=rows, more=more, page=number, filters=filters, args=args,
                  keys=apikeys.list_for(current_user), models=catalog.enabled_models(),
                  export_url=url_for("usage.export", **args))


@bp.get("/export.csv")
@login_required
def export():
    account_id, filters = current_user.account.id, _filters()

    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for record, key_name, _hint, public_id in usage.stream(account_id, filters):
            writer.writerow([record.started_at.isoformat(), record.request_id, key_name, public_id, record.status,
                             record.input_tokens, record.output_tokens, record.cache_read_tokens,
                             record.cache_write_tokens, format_usd(record.cost)[1:].replace(",", ""), record.cost,
                             "yes" if record.usage_estimated else "no", record.duration_ms or ""])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue()

    response = Response(stream_with_context(lines()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="usage-{date.today().isoformat()}.csv"'
    return response


@bp.get("/<request_id>")
@login_required
def receipt(request_id: str):
    found = usage.receipt(current_user.account.id, request_id)
    if found is None:
        abort(404)
    return render_template("usage/receipt.html", r=found)
