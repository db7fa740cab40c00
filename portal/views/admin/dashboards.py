"""Console: the home page, with the dashboards (revenue, spend and margin, upstreams, top users, holds)."""
from flask import render_template, request

from ... import charts, dashboards
from ...errors import InvalidInput
from ...models import utcnow
from ...money import format_usd
from . import bp, section

MODEL_BARS = 12  # the models with most spend get a bar; the table lists them all


def _charts(board: dashboards.Dashboard) -> dict:
    days = [d.day for d in board.revenue.days]
    labels = [f"{d:%m-%d}" for d in days]
    models = board.models[:MODEL_BARS]
    return {
        "revenue": charts.line_chart(
            "chart-revenue", "Revenue per day", labels,
            [charts.Series("Top-ups", [d.topups for d in board.revenue.days]),
             charts.Series("Refunds", [d.refunds for d in board.revenue.days]),
             charts.Series("Disputes", [d.disputes for d in board.revenue.days])], fmt=format_usd),
        "spend": charts.bar_chart(
            "chart-spend", "Spend per day", [f"{day:%m-%d}" for day, _, _ in board.spend_per_day],
            [charts.Series("Spend", [spend for _, _, spend in board.spend_per_day])], fmt=format_usd),
        "models": charts.bar_chart(
            "chart-models", "Spend and margin per model", [row.name for row in models],
            [charts.Series("Spend", [row.spend for row in models])]
            # A margin bar only where a cost is known; a negative margin shows in the table.
            + ([charts.Series("Margin", [max(row.margin or 0, 0) for row in models])]
               if any(row.margin is not None for row in models) else []), fmt=format_usd),
        "upstreams": charts.bar_chart(
            "chart-upstreams", "Calls and errors per upstream", [row.name for row in board.upstreams],
            [charts.Series("Calls", [row.calls for row in board.upstreams]),
             charts.Series("Errors", [row.errors for row in board.upstreams])], fmt=lambda n: f"{n:,}"),
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


section("admin.index", "Overview")
