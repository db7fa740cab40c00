"""Account settings: password, email, two-factor, terms, and closing the account."""
from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .. import legal, mail, twofactor, users
from ..database import atomic
from ..errors import DomainError, InvalidInput
from ..extensions import db
from ..models import User
from .auth import start_session
from .forms import password_field

bp = Blueprint("account", __name__, url_prefix="/account")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()],
                            render_kw={"autocomplete": "current-password"})
    new = password_field("New password")


class ChangeEmailForm(FlaskForm):
    email = EmailField("New email address", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Your password", validators=[DataRequired()], render_kw={"autocomplete": "current-password"})


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired()], render_kw={"autocomplete": "one-time-code"})


class CloseForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired()], render_kw={"autocomplete": "current-password"})


def _me() -> User:
    return db.session.get(User, current_user.id)


def _page(status=200, **forms):
    defaults = {"password_form": PasswordForm(prefix="pw"), "email_form": ChangeEmailForm(prefix="em"),
                "disable_form": CodeForm(prefix="off"), "close_form": CloseForm(prefix="close")}
    defaults.update(forms)
    user = current_user
    return render_template("account/index.html", acceptance=legal.latest_acceptance(user),
                           codes_left=twofactor.recovery_codes_left(user) if user.totp_enabled_at else 0,
                           **defaults), status


@bp.get("/")
@login_required
def index():
    return _page()


@bp.post("/password")
@login_required
def password():
    form = PasswordForm(prefix="pw")
    if form.validate_on_submit():
        try:
            with atomic():
                user = _me()
                users.change_password(user, form.current.data, form.new.data)
        except InvalidInput as exc:
            (form.new if exc.field == "password" else form.current).errors.append(str(exc))
        else:
            start_session(db.session.get(User, current_user.id))  # this session stays; the others end
            flash("Your password is changed. Other sessions are logged out.")
            return redirect(url_for("account.index"), 303)
    return _page(422, password_form=form)


@bp.post("/email")
@login_required
def email():
    form = ChangeEmailForm(prefix="em")
    if form.validate_on_submit():
        try:
            with atomic():
                token = users.request_email_change(_me(), form.email.data, form.password.data)
        except DomainError as exc:
            (form.password if getattr(exc, "field", None) == "password" else form.email).errors.append(str(exc))
        else:
            mail.send(form.email.data.strip(), "Confirm your new email address",
                      render_template("mail/change_email.txt",
                                      link=url_for("account.confirm_email", token=token, _external=True)))
            flash(f"We sent a confirmation link to {form.email.data.strip()}. Your address changes when you open it.")
            return redirect(url_for("account.index"), 303)
    return _page(422, email_form=form)


@bp.get("/email/<token>")
@login_required
def confirm_email(token: str):
    try:
        with atomic():
            user = users.confirm_email_change(token)
            address = user.email
    except DomainError as exc:
        flash(str(exc))
    else:
        flash(f"Your email address is now {address}.")
    return redirect(url_for("account.index"))


@bp.route("/2fa", methods=["GET", "POST"])
@login_required
def two_factor_setup():
    if current_user.totp_enabled_at:
        return redirect(url_for("account.index"))
    secret = session.get("totp_setup") or twofactor.new_secret()
    session["totp_setup"] = secret
    form = CodeForm()
    if form.validate_on_submit():
        try:
            with atomic():
                codes = twofactor.enable(_me(), secret, form.code.data)
        except InvalidInput as exc:
            form.code.errors.append(str(exc))
        else:
            session.pop("totp_setup", None)
            start_session(db.session.get(User, current_user.id))
            return render_template("account/recovery_codes.html", codes=codes)
    uri = twofactor.provisioning_uri(current_user, secret)
    return render_template("account/two_factor.html", form=form, secret=secret, qr=twofactor.qr_svg_data_uri(uri)), \
        422 if form.errors else 200


@bp.post("/2fa/disable")
@login_required
def two_factor_disable():
    form = CodeForm(prefix="off")
    if form.validate_on_submit():
        try:
            with atomic():
                twofactor.disable(_me(), form.code.data)
        except InvalidInput as exc:
            form.code.errors.append(str(exc))
        else:
            start_session(db.session.get(User, current_user.id))
            flash("Two-factor authentication is off.")
            return redirect(url_for("account.index"), 303)
    return _page(422, disable_form=form)


@bp.post("/close")
@login_required
def close():
    form = CloseForm(prefix="close")
    if form.validate_on_submit():
        try:
            with atomic():
                users.close(_me(), form.password.data, request.form.get("refund") == "yes")
        except InvalidInput as exc:
            form.password.errors.append(str(exc))
        else:
            logout_user()
            session.clear()
            flash("Your account is closed. If you asked for a refund, the operator will contact you.")
            return redirect(url_for("pages.home"), 303)
    return _page(422, close_form=form)
