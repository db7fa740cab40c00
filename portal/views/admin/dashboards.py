"""Console: the home page, with the dashboards (revenue, spend and margin, upstreams, top users, holds)."""
from flask import render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ... import charts, dashboards
from ...errors import InvalidInput
from ...i18n import number, usd
from ...models import utcnow
from . import bp, section

MODEL_BARS = 12  # the models with most spend get a bar; the table lists them all


def _charts(board: dashboards.Dashboard) -> dict:
    days = [d.day for d in board.revenue.days]
    labels = [f"{d:%m-%d}" for d in days]
    models = board.models[:MODEL_BARS]
    return {
        "revenue": charts.line_chart(
            "chart-revenue", _("Revenue per day"), labels,
            [charts.Series(_("Top-ups"), [d.topups for d in board.revenue.days]),
             charts.Series(_("Refunds"), [d.refunds for d in board.revenue.days]),
             charts.Series(_("Disputes"), [d.disputes for d in board.revenue.days])], fmt=usd),
        "spend": charts.bar_chart(
            "chart-spend", _("Spend per day"), [f"{day:%m-%d}" for day, _calls, _spend in board.spend_per_day],
            [charts.Series(_("Spend"), [spend for _day, _calls, spend in board.spend_per_day])], fmt=usd),
        "models": charts.bar_chart(
            "chart-models", _("Spend and margin per model"), [row.name for row in models],
            [charts.Series(_("Spend"), [row.spend for row in models])]
            # A margin bar only where a cost is known; a negative margin shows in the table.
            + ([charts.Series(_("Margin"), [max(row.margin or 0, 0) for row in models])]
               if any(row.margin is not None for row in models) else []), fmt=usd),
        "upstreams": charts.bar_chart(
            "chart-upstreams", _("Calls and errors per upstream"), [row.name for row in board.upstreams],
            [charts.Series(_("Calls"), [row.calls for row in board.upstreams]),
             charts.Series(_("Errors"), [row.errors for row in board.upstreams])], fmt=number),
    }


@bp.get("/")
def index():
    status = 200
    error = None
    try:
        period = dashboards.period(request.args.get("days"))
    except InvalidInput as exc:
        period, error, status = dashboards.period(None), str(exc), 422
    board = dashboards.dashboard(period)
    return render_template("admin/index.html", board=board, charts=_charts(board), periods=dashboards.PERIODS,
                           error=error, now=utcnow()), status


section("admin.index", _l("Overview"))
