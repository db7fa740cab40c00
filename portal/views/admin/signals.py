"""Console: abuse signals for the operator to review (signals.py): keys flagged as shared, and
accounts sharing a card, a sign-up address or the addresses their keys are used from. A flag
that is a false positive can be cleared here, with a reason (audited), like `flask signals clear`."""
from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ... import signals
from ...database import atomic
from ...errors import DomainError
from ...extensions import db
from ...models import ApiKey
from . import actor, bp, reason_from, section

INVALID = 422


def _days(raw) -> int:
    try:
        days = int(raw or signals.LOOKBACK_DAYS)
    except ValueError:
        return signals.LOOKBACK_DAYS
    return min(max(days, 1), 3650)


def _page(days: int, status: int = 200, *, error: str = "", failed=None):
    review = signals.review(current_app.config, days=days)
    if failed not in {key.id for key, _user in review.flagged}:
        failed = None  # cleared meanwhile, say: the error goes above the table
    return render_template("admin/signals/index.html", review=review, days=days,
                           threshold=current_app.config["KEY_SHARING_ADDRESSES_PER_DAY"],
                           window=current_app.config["SIGNUP_CLUSTER_HOURS"], error=error, failed=failed), status


@bp.get("/signals")
def signals_index():
    return _page(_days(request.args.get("days")))


@bp.post("/signals/keys/<int:key_id>/clear")
def signals_clear(key_id: int):
    key = db.session.get(ApiKey, key_id)
    if key is None:
        abort(404)
    hint = key.hint
    try:
        reason = reason_from(request.form)
        with atomic():
            signals.clear(db.session.get(ApiKey, key_id), actor=actor(), reason=reason)
    except DomainError as exc:
        db.session.rollback()
        return _page(signals.LOOKBACK_DAYS, INVALID, error=str(exc), failed=key_id)
    flash(_("The sharing flag of %(hint)s is cleared.", hint=hint))
    return redirect(url_for("admin.signals_index", _anchor="flagged-keys"), 303)


section("admin.signals_index", _l("Signals"))
