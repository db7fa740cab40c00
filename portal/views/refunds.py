"""Asking for the unused balance back, from the billing page (the rules are in portal/refunds.py)."""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, TextAreaField
from wtforms.validators import DataRequired, Length

from .. import apikeys, refunds, users
from ..database import atomic
from ..errors import InvalidInput
from ..extensions import db
from ..models import User

bp = Blueprint("refunds", __name__, url_prefix="/billing/refund")
INVALID = 422


class RefundForm(FlaskForm):
    reason = TextAreaField("Anything you want us to know (optional)", validators=[Length(max=2000)])
    close_account = BooleanField("Close my account once the refund is paid")
    # Filing stops every API key at once: the password keeps a borrowed session from doing it.
    password = PasswordField("Your password", validators=[DataRequired()],
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
@login_required
def file():
    form = RefundForm()
    if form.validate_on_submit():
        try:
            with atomic():
                user = db.session.get(User, current_user.id)
                if not users.check_password(user, form.password.data):
                    raise InvalidInput("Your password is not correct.", field="password")
                if refunds.open_request(user) is None and refunds.refundable(user.account).amount == 0:
                    raise InvalidInput("Nothing on your account is refundable now (see the refund policy).",
                                       field="password")
                refund = refunds.request(user, form.reason.data or "asked from the billing page",
                                         close_account=form.close_account.data)
                revoked = apikeys.revoke_all(user)
        except InvalidInput as exc:
            form.password.errors.append(str(exc))
        else:
            flash(f"We received your refund request {refund.id}. "
                  + (f"Your {revoked} API key{'s are' if revoked != 1 else ' is'} revoked. " if revoked else "")
                  + f"The operator will review it and write to you at {refund.contact_email}.")
            return redirect(url_for("refunds.index"), 303)
    return _page(form, INVALID)


@bp.post("/cancel")
@login_required
def cancel():
    if CancelForm(prefix="cancel").validate_on_submit():
        with atomic():
            cancelled = refunds.cancel_open(db.session.get(User, current_user.id))
        if cancelled is not None:
            flash(f"Your refund request {cancelled.id} is cancelled: your balance stays on your account. The API keys "
                  "revoked when you asked stay revoked; create a new key to go on.")
        elif refunds.open_request(current_user) is not None:
            flash("The operator has already started paying this refund, so it can no longer be cancelled.")
        else:
            flash("You have no open refund request.")
    return redirect(url_for("refunds.index"), 303)

