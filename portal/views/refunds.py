"""Asking for the unused balance back, from the billing page (the rules are in portal/refunds.py).

The form posts to the page's own URL: a refused form is the page again (422) where a reload is a
plain GET; a filed request redirects (303) to the page, so a reload never files twice.
"""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, TextAreaField
from wtforms.validators import DataRequired, Length

from .. import apikeys, refunds, users
from ..database import atomic
from ..errors import InvalidInput
from ..extensions import db
from ..models import User
from .csrf import rerender_on_csrf_error

bp = Blueprint("refunds", __name__, url_prefix="/billing/refund")
INVALID = 422
REASON_MAX = 2000


class RefundForm(FlaskForm):
    reason = TextAreaField(_l("Anything you want us to know (optional)"), validators=[Length(
        max=REASON_MAX, message=_l("Keep it under 2,000 characters, or leave it empty."))])
    close_account = BooleanField(_l("Close my account once the refund is paid"))
    # Filing stops every API key at once: the password keeps a borrowed session from doing it.
    password = PasswordField(_l("Your password"), validators=[DataRequired(message=_l(
        "Enter your password: asking stops your API keys, so we check it is you."))],
        render_kw={"autocomplete": "current-password"})


class CancelForm(FlaskForm):
    pass


def _page(form: RefundForm, status: int = 200):
    user = db.session.get(User, current_user.id)
    return render_template("refunds/index.html", form=form, cancel_form=CancelForm(prefix="cancel"),
                           open=refunds.open_request(user), plan=refunds.refundable(user.account),
                           balance=user.account.balance), status


@bp.get("/")
@login_required
def index():
    return _page(RefundForm())


@bp.post("/")
@rerender_on_csrf_error
@login_required
def file():
    form = RefundForm()
    if form.validate_on_submit():
        try:
            with atomic():
                user = db.session.get(User, current_user.id)
                if not users.check_password(user, form.password.data):
                    raise InvalidInput(_("Your password is not correct. Enter the one you log in with."),
                                       field="password")
                if refunds.open_request(user) is None and refunds.refundable(user.account).amount == 0:
                    raise InvalidInput(_("Nothing on your account is refundable now (see the refund policy)."),
                                       field="password")
                refund = refunds.request(user, form.reason.data or "asked from the billing page",
                                         close_account=form.close_account.data)
                revoked = apikeys.revoke_all(user)
        except InvalidInput as exc:
            form.password.errors.append(str(exc))
        else:
            said = [_("We received your refund request %(id)s.", id=refund.id)]
            if revoked:
                said.append(ngettext("Your %(num)d API key is revoked.", "Your %(num)d API keys are revoked.", revoked))
            said.append(_("The operator will review it and write to you at %(email)s.", email=refund.contact_email))
            flash(" ".join(said))
            return redirect(url_for("refunds.index"), 303)
    return _page(form, INVALID)


@bp.post("/cancel")
@login_required
def cancel():
    if CancelForm(prefix="cancel").validate_on_submit():
        with atomic():
            cancelled = refunds.cancel_open(db.session.get(User, current_user.id))
        if cancelled is not None:
            flash(_("Your refund request %(id)s is cancelled: your balance stays on your account. The API keys "
                    "revoked when you asked stay revoked; create a new key to go on.", id=cancelled.id))
        elif refunds.open_request(current_user) is not None:
            flash(_("The operator has already started paying this refund, so it can no longer be cancelled."))
        else:
            flash(_("You have no open refund request."))
    return redirect(url_for("refunds.index"), 303)


@bp.get("/cancel")
@login_required
def cancel_again():
    # A reload of the page the cancel form led to, or a bookmark: the refund page, cancelling nothing.
    return redirect(url_for("refunds.index"), 303)
