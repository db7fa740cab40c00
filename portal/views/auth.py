"""Registration, email verification, login (with 2FA), password reset, and terms re-consent."""
from flask import (Blueprint, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_required, login_user, logout_user

from .. import apikeys, legal, mail, ratelimit, twofactor, users
from ..database import atomic
from ..errors import DomainError, InvalidInput
from ..extensions import db, login_manager
from ..money import format_usd
from ..models import LegalKind, User
from .forms import ConsentForm, EmailForm, LoginForm, NewPasswordForm, RegisterForm, TwoFactorForm

bp = Blueprint("auth", __name__)
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see that page."
login_manager.session_protection = "basic"

LOGIN_WINDOW = 15 * 60
LOGIN_LIMIT_ACCOUNT = 5
LOGIN_LIMIT_IP = 20
REGISTER_LIMIT_IP = 10  # sign-ups per IP per hour
INVALID = 422  # form errors: htmx is configured to swap these


@login_manager.user_loader
def load_user(session_id: str):
    """The session's user, or None (logged out) once suspended, terminated, or their sessions were reset."""
    user_id, _, epoch = session_id.partition(":")
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    if user is None or not user.is_active or str(user.session_epoch) != epoch:
        return None
    return user


def safe_next(target: str | None) -> str:
    """Only local paths: never an absolute or scheme-relative URL."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("dashboard.index")


def start_session(user: User) -> None:
    """A fresh session for the logged-in user: nothing from before login carries over."""
    next_url = session.get("next_after_login")
    session.clear()
    login_user(user)
    if next_url:
        session["next_after_login"] = next_url


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _throttled(email: str) -> int | None:
    return (ratelimit.blocked(f"login:acct:{users.login_key(email)}", LOGIN_LIMIT_ACCOUNT)
            or ratelimit.blocked(f"login:ip:{_client_ip()}", LOGIN_LIMIT_IP))


def _count_failure(email: str) -> None:
    ratelimit.hit(f"login:acct:{users.login_key(email)}", LOGIN_WINDOW)
    ratelimit.hit(f"login:ip:{_client_ip()}", LOGIN_WINDOW)


def _minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@bp.route("/register", methods=["GET", "POST"])
def register():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    terms = legal.current(LegalKind.TERMS)
    form = RegisterForm()
    if terms is None:
        return render_template("auth/register.html", form=None, terms=None)
    if form.validate_on_submit():
        if ratelimit.hit(f"register:{_client_ip()}", 3600) > REGISTER_LIMIT_IP:
            form.email.errors.append("Too many sign-ups from your network; try again in an hour.")
            return render_template("auth/register.html", form=form, terms=terms), 429
        try:
            with atomic():
                result = users.register(form.email.data, form.password.data, terms, _client_ip())
        except InvalidInput as exc:
            (form.password if exc.field == "password" else form.email).errors.append(str(exc))
        else:
            if result.verify_token:
                mail.send(result.user.email, "Confirm your email address",
                          render_template("mail/verify.txt", link=url_for("auth.verify", token=result.verify_token,
                                                                           _external=True)))
            elif ratelimit.hit(f"register-notice:{result.existing.id}", 86400) <= 3:  # no mail bombing
                mail.send(result.existing.email, "Someone tried to register with your address",
                          render_template("mail/already_registered.txt", login=url_for("auth.login", _external=True),
                                          reset=url_for("auth.forgot", _external=True)))
            return render_template("auth/check_inbox.html", email=form.email.data.strip())
    status = INVALID if form.errors else 200
    return render_template("auth/register.html", form=form, terms=terms), status


@bp.get("/verify/<token>")
def verify(token: str):
    try:
        with atomic():
            user = users.verify_email(token, current_app.config["SIGNUP_CREDIT"])
            credit = user.account.balance
    except DomainError as exc:
        return render_template("message.html", title="Link not valid", message=str(exc),
                               action=(url_for("auth.login"), "Log in to get a new link")), 400
    gift = f" Your balance is {format_usd(credit)}." if credit else ""
    flash(f"Thank you: {user.email} is verified. You can create API keys now.{gift}")
    return redirect(url_for("dashboard.index") if current_user.is_authenticated else url_for("auth.login"))


@bp.post("/verify/resend")
@login_required
def resend_verification():
    if current_user.is_verified:
        return redirect(url_for("dashboard.index"))
    if ratelimit.hit(f"verify-resend:{current_user.id}", 3600) > 5:
        flash("We sent several links already; check your spam folder, or try again in an hour.")
        return redirect(url_for("dashboard.index"))
    with atomic():
        user = db.session.get(User, current_user.id)
        token = users.email_links.issue(user, users.TokenPurpose.VERIFY)
    mail.send(current_user.email, "Confirm your email address",
              render_template("mail/verify.txt", link=url_for("auth.verify", token=token, _external=True)))
    flash(f"A new confirmation link is on its way to {current_user.email}.")
    return redirect(url_for("dashboard.index"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data.strip()
        wait = _throttled(email)
        if wait:
            form.password.errors.append(f"Too many failed attempts. Try again in {_minutes(wait)}.")
            return render_template("auth/login.html", form=form), 429
        with atomic():  # a successful check may rehash the password with newer parameters
            user = users.authenticate_password(email, form.password.data)
        if user is None:
            _count_failure(email)
            form.password.errors.append("Email or password is not correct.")
        elif not user.is_active:
            form.password.errors.append("This account is not active. Contact us if you think this is a mistake.")
        elif user.totp_enabled_at is not None:
            session.clear()
            session["2fa"] = {"user": user.id, "epoch": user.session_epoch, "next": request.args.get("next")}
            return redirect(url_for("auth.two_factor"))
        else:
            ratelimit.reset(f"login:acct:{users.login_key(email)}")
            start_session(user)
            return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), INVALID if form.errors else 200


@bp.route("/login/2fa", methods=["GET", "POST"])
def two_factor():
    pending = session.get("2fa")
    user = db.session.get(User, pending["user"]) if pending else None
    if user is None or user.session_epoch != pending["epoch"] or not user.is_active:
        session.pop("2fa", None)
        return redirect(url_for("auth.login"))
    form = TwoFactorForm()
    if form.validate_on_submit():
        key = f"2fa:{user.id}"
        wait = ratelimit.blocked(key, LOGIN_LIMIT_ACCOUNT)
        if wait:
            form.code.errors.append(f"Too many wrong codes. Try again in {_minutes(wait)}.")
            return render_template("auth/two_factor.html", form=form), 429
        with atomic():
            ok = twofactor.check(db.session.get(User, user.id), form.code.data)
        if ok:
            ratelimit.reset(key)
            next_url = pending.get("next")
            start_session(user)
            return redirect(safe_next(next_url))
        ratelimit.hit(key, LOGIN_WINDOW)
        form.code.errors.append("That code is not valid.")
    return render_template("auth/two_factor.html", form=form), INVALID if form.errors else 200


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("pages.home"))


@bp.route("/forgot", methods=["GET", "POST"])
def forgot():
    form = EmailForm()
    if form.validate_on_submit():
        if ratelimit.hit(f"forgot:{_client_ip()}", 3600) <= 10:
            with atomic():
                found = users.request_password_reset(form.email.data)
            if found:
                user, token = found
                mail.send(user.email, "Reset your password",
                          render_template("mail/reset.txt", link=url_for("auth.reset", token=token, _external=True)))
        return render_template("message.html", title="Check your inbox",
                               message="If an account uses that address, a link to reset its password is on its "
                                       "way. The link works for one hour.")
    return render_template("auth/forgot.html", form=form), INVALID if form.errors else 200


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str):
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            with atomic():
                users.reset_password(token, form.password.data)
        except DomainError as exc:
            return render_template("message.html", title="Link not valid", message=str(exc),
                                   action=(url_for("auth.forgot"), "Ask for a new link")), 400
        logout_user()
        session.clear()
        flash("Your password is changed. Log in with the new one.")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset.html", form=form), INVALID if form.errors else 200


@bp.route("/consent", methods=["GET", "POST"])
@login_required
def consent():
    terms = legal.needs_consent(current_user)
    if terms is None:
        return redirect(url_for("dashboard.index"))
    form = ConsentForm()
    if form.validate_on_submit():
        if request.form.get("decision") == "accept":
            with atomic():
                legal.accept(db.session.get(User, current_user.id), terms, _client_ip())
            flash(f"Thank you for accepting the terms (version {terms.version}).")
            return redirect(safe_next(request.args.get("next")))
        with atomic():
            user = db.session.get(User, current_user.id)
            refund = users.request_refund(user, form.reason.data or "declined the new terms")
            apikeys.revoke_all(user)
        return render_template("auth/refund_received.html", refund=refund)
    return render_template("auth/consent.html", form=form, terms=terms, html=legal.render(terms))


def require_consent():
    """Keep a logged-in user on the consent page until they accept significant new terms."""
    if not current_user.is_authenticated or request.blueprint in (None, "proxy", "pages") \
            or request.endpoint in ("auth.consent", "auth.logout", "static"):
        return None
    if legal.needs_consent(current_user):
        if request.headers.get("HX-Request"):
            response = current_app.response_class(status=204)
            response.headers["HX-Redirect"] = url_for("auth.consent")
            return response
        return redirect(url_for("auth.consent", next=request.full_path.rstrip("?")))
    return None

