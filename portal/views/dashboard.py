"""The signed-in home: balance, holds, expiry, 30 days of spend, recent calls."""
from flask import Blueprint, render_template
from flask_login import current_user, login_required

from .. import topups, usage
from ..money import format_usd

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

CHART_WIDTH, CHART_HEIGHT = 600, 160


def spend_chart(days: list) -> dict:
    """Bar geometry for a server-rendered SVG (no script needed)."""
    peak = max((amount for _, amount in days), default=0) or 1
    width = CHART_WIDTH / len(days)
    bars = []
    for i, (day, amount) in enumerate(days):
        height = round(amount / peak * (CHART_HEIGHT - 20), 1)
        bars.append({"x": round(i * width + 1, 1), "y": round(CHART_HEIGHT - height, 1), "w": round(width - 2, 1),
                     "h": height, "label": f"{day.isoformat()}: {format_usd(amount)}"})
    return {"bars": bars, "width": CHART_WIDTH, "height": CHART_HEIGHT, "peak": format_usd(peak if peak > 1 else 0),
            "total": format_usd(sum(a for _, a in days)), "first": days[0][0], "last": days[-1][0]}


@bp.get("/")
@login_required
def index():
    account = current_user.account
    return render_template("dashboard/index.html", account=account, standing=topups.standing(account),
                           chart=spend_chart(usage.daily_spend(account.id)), recent=usage.recent(account.id))
