"""Redeeming a gift code (the form, templates/codes/_redeem_form.html, sits on the billing page).

A redeemed code redirects (303) to the billing page with the amount said; a refused one is the
billing page again with the reason by the field and the code kept (422, or 429 when throttled).
A GET of the form's URL (a reload) goes back to the billing page and redeems nothing.
"""
from flask import Blueprint, flash, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import giftcodes
from ..database import atomic
from ..extensions import db, htmx
from ..models import User
from .billing import RedeemForm, back_to_page, page
from .csrf import rerender_on_csrf_error
from .htmx import redirect_to

bp = Blueprint("codes", __name__, url_prefix="/billing/codes")


@bp.post("/redeem")
@rerender_on_csrf_error
@login_required
def redeem():
    # CSRF is checked for every portal POST by CSRFProtect before this runs.
    form = RedeemForm()
    back = url_for("billing.index")
    typed = form.code.data or ""
    if not form.validate_on_submit():
        return page(422, "codes", code_form=form)
    if not typed.strip():
        form.code.errors = [_("Enter the gift code you were given, like %(shape)s.", shape=giftcodes.SHAPE)]
        return page(422, "codes", code_form=form)
    user = db.session.get(User, current_user.id)
    try:
        with atomic():
            entry = giftcodes.redeem(user, typed, request.remote_addr)
    except giftcodes.CodeRefused as exc:
        message = str(exc.message)  # in the page's language (str(exc) is the English for the log)
        throttled = isinstance(exc, giftcodes.TooManyAttempts)
        if throttled and htmx:  # htmx does not swap a 429; it follows the redirect to the flashed message
            flash(message)
            return redirect_to(back)
        form.code.errors = [message]
        return page(429 if throttled else 422, "codes", code_form=form)
    flash(giftcodes.describe(entry.amount))
    return redirect_to(back)


@bp.get("/redeem")
@login_required
def redeem_again():
    return back_to_page("codes")
