"""Usage: every call, filtered and paginated, with the filtered set's totals and its spend per model
and per key; CSV export streamed; a receipt per call.

The CSV keeps English, machine-readable column names and values (`cost_usd` with a dot, "yes"/"no")
whatever the page's language: spreadsheets and scripts read it, and a header that changed with the
reader's language would break them.
"""
import csv
import io
import re
from datetime import date

from flask import Blueprint, Response, abort, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required

from .. import apikeys, catalog, charts, i18n, usage
from ..money import format_usd
from ..pricing import TOKEN_CLASSES
from .converters import ID_MAX
from .htmx import render

bp = Blueprint("usage", __name__, url_prefix="/usage")
MAX_PAGE = 100_000  # 5 million rows deep; further is a 404, not an offset the database refuses
# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) in a key name).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# One column per token class (docs/billing.md, "Token classes"), then fees, tier and flags as plain text.
CSV_COLUMNS = ["time", "request_id", "key", "model", "status",
               *(f"{name}_tokens" for name in TOKEN_CLASSES), "fee_units", "service_tier", "long_context",
               "cost_usd", "cost_micro_usd", "estimated", "clamped", "flags", "duration_ms"]


def _date(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


def _int(name: str) -> int | None:
    """A whole number from the query string; None when absent, malformed or beyond any id."""
    value = request.args.get(name, "")
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > ID_MAX:
        return None
    return int(value)


def _page_number() -> int:
    """The page asked for: 1 when absent or malformed (as for any filter), 404 beyond MAX_PAGE."""
    raw = request.args.get("page", "")
    if not re.fullmatch(r"[0-9]+", raw):
        return 1
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(MAX_PAGE)) or int(digits) > MAX_PAGE:  # int() of 5000 digits would raise
        abort(404)
    return max(1, int(digits))


def csv_text(value: str) -> str:
    """A text cell a spreadsheet shows as text: a leading quote before formula characters (OWASP).

    Only text columns pass through here; numbers (costs, tokens) are ours and stay numbers.
    """
    return "'" + value if value.startswith(FORMULA_START) else value


def fee_units(units: dict | None) -> str:
    """Fee units as text a spreadsheet keeps as it is: "file_search=1 web_search=3"."""
    return " ".join(f"{name}={count}" for name, count in sorted((units or {}).items()) if count)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _filters() -> usage.Filters:
    return usage.Filters(key_id=_int("key"), model_id=_int("model"), start=_date("start"), end=_date("end"))


def _query_args(filters: usage.Filters) -> dict:
    args = {"key": filters.key_id, "model": filters.model_id, "start": filters.start, "end": filters.end}
    return {k: v for k, v in args.items() if v}


CHART_ROWS = 8  # bars per chart; the rest are summed into one "others" bar


def top(groups: list[usage.Spend], others: str) -> list[usage.Spend]:
    """The largest groups, and the rest as one named `others` (so a chart stays short on a phone)."""
    if len(groups) <= CHART_ROWS:
        return groups
    shown, rest = groups[:CHART_ROWS - 1], groups[CHART_ROWS - 1:]
    return [*shown, usage.Spend(others % {"num": len(rest)}, sum(g.cost for g in rest), sum(g.calls for g in rest))]


def calls_text(n: int) -> str:
    """ "1 call", "1,234 calls", in the page's language."""
    return ngettext("%(count)s call", "%(count)s calls", n, count=i18n.number(n))


def spend_chart(chart_id: str, title: str, groups: list[usage.Spend]):
    """A horizontal bar chart of spend per group, the call count in each bar's tooltip."""
    return charts.hbar_chart(chart_id, title, [(g.name, g.cost) for g in groups], fmt=i18n.usd,
                             notes=[calls_text(g.calls) for g in groups])


@bp.get("/")
@login_required
def index():
    account_id, filters = current_user.account.id, _filters()
    number = _page_number()
    rows, more = usage.page(account_id, filters, number)
    args = _query_args(filters)
    by_model = top(usage.spend_by(account_id, filters, "model"), _("%(num)d other models"))
    by_key = top(usage.spend_by(account_id, filters, "key"), _("%(num)d other keys"))
    return render("usage/index.html", "results", rows=rows, more=more, page=number, filters=filters, args=args,
                  keys=apikeys.list_for(current_user), models=catalog.enabled_models(),
                  totals=usage.totals(account_id, filters), by_model=by_model, by_key=by_key,
                  model_chart=spend_chart("spend-by-model", _("Spend by model"), by_model),
                  key_chart=spend_chart("spend-by-key", _("Spend by key"), by_key),
                  label=usage.label, status_label=usage.status_label, calls_text=calls_text,
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
            tokens = usage.usage_of(record).tokens()
            writer.writerow([record.started_at.isoformat(), csv_text(record.request_id), csv_text(key_name),
                             csv_text(public_id), csv_text(record.status),
                             *(tokens[name] for name in TOKEN_CLASSES), csv_text(fee_units(record.units)),
                             csv_text(record.service_tier or ""), _yes(record.long_context),
                             format_usd(record.cost)[1:].replace(",", ""), record.cost,
                             _yes(record.usage_estimated), _yes(record.usage_clamped),
                             csv_text("; ".join(str(flag) for flag in record.flags or [])), record.duration_ms or ""])
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
    return render_template("usage/receipt.html", r=found, label=usage.label, usd_exact=usage.usd_exact,
                           status_label=usage.status_label)
