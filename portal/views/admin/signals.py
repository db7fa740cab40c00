"""Console: abuse signals for the operator to review (signals.py): keys flagged as shared, and
accounts sharing a card, a sign-up address or the addresses their keys are used from."""
from flask import current_app, render_template, request

from ... import signals
from . import bp, section


def _days(raw) -> int:
    try:
        days = int(raw or signals.LOOKBACK_DAYS)
    except ValueError:
        return signals.LOOKBACK_DAYS
    return min(max(days, 1), 3650)


@bp.get("/signals")
def signals_index():
    days = _days(request.args.get("days"))
    review = signals.review(current_app.config, days=days)
    return render_template("admin/signals/index.html", review=review, days=days,
                           threshold=current_app.config["KEY_SHARING_ADDRESSES_PER_DAY"],
                           window=current_app.config["SIGNUP_CLUSTER_HOURS"])


section("admin.signals_index", "Signals")
