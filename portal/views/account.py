"""Account settings: password, email, two-factor, language, terms, and closing the account.

Post/redirect/get: a successful POST answers 303 to the account page. A form with errors is shown
again (422) at the URL it was posted to, and each of those POST-only URLs also answers GET with a
303 to its section of the account page, so a reload, a bookmark or the back button never meets a
405, and a reload of a successful POST never repeats it.
"""
from flask import (Blueprint, Response, current_app, flash, make_response, redirect, render_template, request, session,
                   stream_with_context, url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired

from .. import dataexport, legal, links, mail, refunds, security, security_notices, twofactor, users
from ..database import atomic
from ..email_links import InvalidToken
from ..errors import DomainError, InvalidInput
from ..extensions import db
from ..models import User, utcnow
from . import shown_once
from .auth import end_session, start_session
from .csrf import rerender_on_csrf_error
from .forms import email_address, password_field

bp = Blueprint("account", __name__, url_prefix="/account")
_RECOVERY_CODES = "recovery_codes"  # session entry: new recovery codes, until the page after the setup shows them
_YOUR_PASSWORD = _l("Enter your password to confirm it is you.")


class PasswordForm(FlaskForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired(message=_l("Enter your current password."))],
                            render_kw={"autocomplete": "current-password"})
    new = password_field(_l("New password"))


class ChangeEmailForm(FlaskForm):
    email = EmailField(_l("New email address"), validators=[DataRequired(message=_l("Enter the new email address.")),
                                                           email_address], render_kw={"autocomplete": "email"})
    password = PasswordField(_l("Your password"), validators=[DataRequired(message=_YOUR_PASSWORD)],
                             render_kw={"autocomplete": "current-password"})


class CodeForm(FlaskForm):
    code = StringField(_l("Code"), validators=[DataRequired(message=_l("Enter the 6-digit code your app shows."))],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"})


class DisableForm(FlaskForm):
    code = StringField(_l("Code from your authenticator app, or a recovery code"),
                       validators=[DataRequired(message=_l("Enter the 6-digit code your app shows, or a recovery "
                                                           "code."))],
                       render_kw={"autocomplete": "one-time-code"})


class CloseForm(FlaskForm):
    password = PasswordField(_l("Your password"), validators=[DataRequired(message=_YOUR_PASSWORD)],
                             render_kw={"autocomplete": "current-password"})


def _me() -> User:
    return db.session.get(User, current_user.id)


def _page(status=200, **forms):
    """The account page; a form given with errors is shown with them, summed up at the top."""
    defaults = {"password_form": PasswordForm(prefix="pw"), "email_form": ChangeEmailForm(prefix="em"),
                "disable_form": DisableForm(prefix="off"), "close_form": CloseForm(prefix="close")}
    defaults.update(forms)
    failed = next((form for form in forms.values() if form.errors), None)
    user = current_user
    return render_template("account/index.html", acceptance=legal.latest_acceptance(user), refund=refunds.latest(user),
                           codes_left=twofactor.recovery_codes_left(user) if user.totp_enabled_at else 0,
                           failed_form=failed, **defaults), status


def _to_section(section: str):
    """GET on a URL that only takes a form: the account page, at that form (a reload never meets 405)."""
    return redirect(url_for("account.index", _anchor=section), 303)


@bp.get("/")
@login_required
def index():
    return _page()


@bp.route("/password", methods=["GET", "POST"])
@rerender_on_csrf_error
@login_required
def password():
    if request.method in ("GET", "HEAD"):
        return _to_section("password")
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
            _security_notice(security_notices.PASSWORD_CHANGED)
            flash(_("Your password is changed. Other sessions are logged out."))
            return redirect(url_for("account.index"), 303)
    return _page(422, password_form=form)


def _security_notice(kind: str) -> None:
    """Mail the owner (soon, after this commit) what just changed on their account, and from where."""
    security_notices.notify(current_app._get_current_object(), kind, current_user.id, request.remote_addr)


@bp.route("/email", methods=["GET", "POST"])
@rerender_on_csrf_error
@login_required
def email():
    if request.method in ("GET", "HEAD"):
        return _to_section("email")
    form = ChangeEmailForm(prefix="em")
    if form.validate_on_submit():
        try:
            with atomic():
                token = users.request_email_change(_me(), form.email.data, form.password.data)
        except DomainError as exc:
            (form.password if getattr(exc, "field", None) == "password" else form.email).errors.append(str(exc))
        else:
            with mail.localized(current_user.locale):
                mail.send(form.email.data.strip(), _("Confirm your new email address"),
                          render_template("mail/change_email.txt",
                                          link=links.public_url("account.confirm_email", token=token)))
            flash(_("We sent a confirmation link to %(email)s. Your address changes when you open it.",
                    email=form.email.data.strip()))
            return redirect(url_for("account.index"), 303)
    return _page(422, email_form=form)


@bp.get("/email/<token>")
@login_required
def confirm_email(token: str):
    try:
        with atomic():
            change = users.confirm_email_change(token)
            user_id, address = change.user.id, change.user.email
    except InvalidToken:
        flash(_("This link is invalid, already used or expired. Change the address again to get a new one."))
        return redirect(url_for("account.index"))
    except DomainError as exc:
        flash(str(exc))
        return redirect(url_for("account.index"))
    # Whoever changed it, the owner hears of it at the address they had (and at the new one).
    security_notices.notify(current_app._get_current_object(), security_notices.EMAIL_CHANGED, user_id,
                            request.remote_addr, old_email=change.old_email, new_email=address)
    if user_id == current_user.id:
        start_session(db.session.get(User, user_id))  # this session stays; the others end
        flash(_("Your email address is now %(email)s. Other sessions are logged out.", email=address))
    else:
        flash(_("The email address of the account is now %(email)s.", email=address))
    return redirect(url_for("account.index"))


@bp.route("/2fa", methods=["GET", "POST"])
@rerender_on_csrf_error
@login_required
def two_factor_setup():
    if current_user.totp_enabled_at:
        codes = shown_once.take(_RECOVERY_CODES) if request.method == "GET" else None
        if codes:  # the one view the 303 below leads to; a reload goes to the account page
            return security.no_store(make_response(render_template("account/recovery_codes.html", codes=codes)))
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
            shown_once.keep(_RECOVERY_CODES, codes)  # post/redirect/get: a reload never posts the code again
            return security.no_store(redirect(url_for("account.two_factor_setup"), 303))
    uri = twofactor.provisioning_uri(current_user, secret)
    page = render_template("account/two_factor.html", form=form, secret=secret, qr=twofactor.qr_svg_data_uri(uri))
    return security.no_store(make_response(page, 422 if form.errors else 200))


@bp.route("/2fa/disable", methods=["GET", "POST"])
@rerender_on_csrf_error
@login_required
def two_factor_disable():
    if request.method in ("GET", "HEAD"):
        return _to_section("two-factor")
    form = DisableForm(prefix="off")
    if form.validate_on_submit():
        try:
            with atomic():
                twofactor.disable(_me(), form.code.data)
        except InvalidInput as exc:
            form.code.errors.append(str(exc))
        else:
            start_session(db.session.get(User, current_user.id))
            _security_notice(security_notices.TWO_FACTOR_OFF)
            flash(_("Two-factor authentication is off."))
            return redirect(url_for("account.index"), 303)
    return _page(422, disable_form=form)


@bp.route("/close", methods=["GET", "POST"])
@rerender_on_csrf_error
@login_required
def close():
    if request.method in ("GET", "HEAD"):
        return _to_section("close")
    form = CloseForm(prefix="close")
    if form.validate_on_submit():
        try:
            with atomic():
                users.close(_me(), form.password.data, request.form.get("refund") == "yes")
        except InvalidInput as exc:
            form.password.errors.append(str(exc))
        else:
            end_session()
            flash(_("Your account is closed. If you asked for a refund, the operator will contact you."))
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
