"""Redeeming a gift code (the form, templates/codes/_redeem_form.html, sits on the billing page)."""
from flask import Blueprint, flash, render_template, request, url_for
from flask_login import current_user, login_required

from .. import giftcodes
from ..database import atomic
from ..extensions import db, htmx
from ..models import User
from .htmx import redirect_to

bp = Blueprint("codes", __name__, url_prefix="/billing/codes")


@bp.post("/redeem")
@login_required
def redeem():
    # CSRF is checked for every portal POST by CSRFProtect before this runs.
    back = url_for("billing.index")
    typed = request.form.get("code", "")
    if not typed.strip():
        flash("Enter the gift code you were given.")
        return redirect_to(back)
    try:
        with atomic():
            entry = giftcodes.redeem(db.session.get(User, current_user.id), typed, request.remote_addr)
    except giftcodes.TooManyAttempts as exc:
        if htmx:  # htmx does not swap a 429; it follows the redirect to the flashed message
            flash(str(exc))
            return redirect_to(back)
        return render_template("message.html", title="Too many attempts", message=str(exc),
                               action=(back, "Back to billing")), 429
    except giftcodes.CodeRefused as exc:
        flash(str(exc))
        return redirect_to(back)
    flash(giftcodes.describe(entry.amount))
    return redirect_to(back)
