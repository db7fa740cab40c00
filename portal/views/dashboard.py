"""The signed-in home: balance, holds, expiry, 30 days of spend and recent calls; on the first day,
before any call, what to do next instead of an empty chart."""
from flask import Blueprint, render_template
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import apikeys, charts, i18n, topups, usage

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

CHART_WIDTH = charts.NARROW  # about 1:1 on a phone, so its text stays readable (portal/charts.py)
# Short day labels for the chart's x axis (the full dates are in each bar's tooltip and the description).
SHORT_DAY = {"en": "{d:%m-%d}", "zh": "{d.month}月{d.day}日"}


def short_day(day) -> str:
    return SHORT_DAY.get(i18n.language(), SHORT_DAY["en"]).format(d=day)


def spend_chart(days: list):
    """Daily spend as bars with a money axis, the month's total in the legend."""
    return charts.bar_chart("daily-spend", _("Spend per day, last 30 days (UTC)"), [short_day(d) for d, _c in days],
                            [charts.Series(_("Spend"), [amount for _d, amount in days])], fmt=i18n.usd,
                            width=CHART_WIDTH)


@bp.get("/")
@login_required
def index():
    account = current_user.account
    context = {"account": account, "standing": topups.standing(account), "cents": i18n.usd_cents,
               "status_label": usage.status_label}
    if not usage.has_calls(account.id):
        has_key = any(key.revoked_at is None for key in apikeys.list_for(current_user))
        return render_template("dashboard/index.html", first_day=True, has_key=has_key, **context)
    days = usage.daily_spend(account.id)
    return render_template("dashboard/index.html", first_day=False, chart=spend_chart(days),
                           month_total=sum(amount for _d, amount in days), recent=usage.recent(account.id), **context)
