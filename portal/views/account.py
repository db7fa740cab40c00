"""Account settings: password, email, two-factor, terms, and closing the account."""
from flask import (Blueprint, Response, flash, make_response, redirect, render_template, request, session,
                   stream_with_context, url_for)
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .. import dataexport, legal, links, mail, refunds, security, twofactor, users
from ..database import atomic
from ..errors import DomainError, InvalidInput
from ..extensions import db
from ..models import User, utcnow
from .auth import end_session, start_session
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
    return render_template("account/index.html", acceptance=legal.latest_acceptance(user), refund=refunds.latest(user),
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
                                      link=links.public_url("account.confirm_email", token=token)))
            flash(f"We sent a confirmation link to {form.email.data.strip()}. Your address changes when you open it.")
            return redirect(url_for("account.index"), 303)
    return _page(422, email_form=form)


@bp.get("/email/<token>")
@login_required
def confirm_email(token: str):
    try:
        with atomic():
            change = users.confirm_email_change(token)
            user_id, address = change.user.id, change.user.email
    except DomainError as exc:
        flash(str(exc))
        return redirect(url_for("account.index"))
    # Whoever changed it, the owner hears of it at the address they had.
    mail.send(change.old_email, "Your email address was changed",
              render_template("mail/email_changed.txt", new_email=address, contact=links.public_url("pages.contact")))
    if user_id == current_user.id:
        start_session(db.session.get(User, user_id))  # this session stays; the others end
        flash(f"Your email address is now {address}. Other sessions are logged out.")
    else:
        flash(f"The email address of the account is now {address}.")
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
            return security.no_store(make_response(render_template("account/recovery_codes.html", codes=codes)))
    uri = twofactor.provisioning_uri(current_user, secret)
    page = render_template("account/two_factor.html", form=form, secret=secret, qr=twofactor.qr_svg_data_uri(uri))
    return security.no_store(make_response(page, 422 if form.errors else 200))


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
            end_session()
            flash("Your account is closed. If you asked for a refund, the operator will contact you.")
            return redirect(url_for("pages.home"), 303)
    return _page(422, close_form=form)


@bp.get("/export.json")
@login_required
def export():
    """All of the person's data as one JSON file (suspended people may download it too)."""
    response = Response(stream_with_context(dataexport.json_chunks(current_user.id)), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="my-data-{utcnow().date().isoformat()}.json"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/suspended")
@login_required
def suspended():
    """What a suspension means and how to appeal (where a refused htmx request sends the browser)."""
    if not current_user.is_suspended:
        return redirect(url_for("dashboard.index"))
    return render_template("account/suspended.html")
