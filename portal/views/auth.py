"""Registration, email verification, login (with 2FA), password reset, and terms re-consent."""
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user, login_required, login_user, logout_user
from flask_login.utils import login_url

from .. import apikeys, i18n, legal, links, logins, mail, ratelimit, refunds, security_notices, twofactor, users
from ..database import atomic
from ..errors import DomainError, InvalidInput
from ..extensions import db, htmx, login_manager
from ..i18n import usd
from ..models import LegalKind, User
from ..ratelimit import Limit
from .csrf import rerender_on_csrf_error
from .forms import ConsentForm, EmailForm, LoginForm, NewPasswordForm, RegisterForm, TwoFactorForm
from .htmx import redirect_to

bp = Blueprint("auth", __name__)
login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please log in to see that page.")  # flashed by `unauthorized` below
login_manager.session_protection = "basic"

# Attempts at a password or a two-factor code (docs/architecture.md, "Throttles"). Each is
# reserved before it is checked, and a successful one is given back, so the limits count failures.
# The narrow limit (one account from one address) stops guessing; the per-account ceiling over
# all addresses is much higher, so a stranger cannot lock the owner out from the owner's own address.
LOGIN_WINDOW = 15 * 60
LOGIN_LIMIT_ACCOUNT_IP = 5       # per account and client address, per LOGIN_WINDOW
LOGIN_LIMIT_IP = 20              # per client address, any accounts, per LOGIN_WINDOW
LOGIN_LIMIT_ACCOUNT = 50         # per account, all addresses, per hour
TWO_FACTOR_LIMIT_ACCOUNT_IP = 5  # per account and client address, per LOGIN_WINDOW
TWO_FACTOR_LIMIT_ACCOUNT = 20    # per account, all addresses, per hour
# Sign-ups from one address per hour. Completed ones (an account made, or what looks like one
# to the caller: see `register`) have a narrow limit; failed forms a wider one of their own, so an
# office behind one address is not refused after a few typos, and probing is still throttled.
REGISTER_LIMIT_IP = 10
REGISTER_FAILURE_LIMIT_IP = 50
REGISTER_WINDOW = 3600
INVALID = 422  # form errors: htmx is configured to swap these
# Post/redirect/get: what a successful form has to say is kept in the session for the one GET of its
# own URL that the 303 leads to, so a reload there shows the page again and never sends the form twice.
_SIGNED_UP = "signed_up"        # the address a sign-up's mail went to
_RESET_SENT = "reset_sent"      # a password-reset link was asked for
_DECLINED = "declined_refund"   # the refund request made by declining new terms


@login_manager.user_loader
def load_user(session_id: str):
    """The session's user, or None (logged out) once the session ended, the account was terminated,
    or all their sessions were reset (suspension does that too). A suspended person may log in
    again, to a read-only portal (views/readonly.py): `User.is_active` is false for terminated only.

    A live server-side session is required (`logins`), so neither a copy of a logged-out cookie nor
    Flask-Login's remember-me cookie (never set here, and carrying no session id) logs anyone in.
    """
    user_id, _, epoch = session_id.partition(":")
    if not user_id.isdigit():
        return None
    user = logins.live_user(session.get("sid"), int(user_id), current_app.permanent_session_lifetime)
    if user is None or not user.is_active or str(user.session_epoch) != epoch:
        return None
    return user


def safe_next(target: str | None) -> str:
    """Only local paths, however encoded (see links.is_local_path); the dashboard otherwise."""
    return target if links.is_local_path(target) else url_for("dashboard.index")


def _page_behind_htmx() -> str:
    """The page a person was on when htmx asked for a fragment: HX-Current-URL's path when it is this
    site, else the path htmx asked for (never another site's address)."""
    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    ours = {request.host, urlsplit(links.site_root()).netloc}
    if current.scheme in ("http", "https") and current.netloc in ours:
        target = current.path + (f"?{current.query}" if current.query else "")
    else:
        target = request.full_path.rstrip("?")
    return target if links.is_local_path(target) else url_for("dashboard.index")


@login_manager.unauthorized_handler
def unauthorized():
    """Send a logged-out request to the login page, with `next` to come back to.

    An htmx request (a fragment for a page, after the session ended) gets a 204 with HX-Redirect,
    so the whole browser goes to the login page instead of the login page landing inside the page.
    """
    flash(str(login_manager.login_message))
    if htmx:
        return redirect_to(url_for("auth.login", next=_page_behind_htmx()))
    return redirect(login_url(login_manager.login_view, next_url=request.url))


def start_session(user: User) -> None:
    """A fresh session for the logged-in user: nothing from before login carries over."""
    next_url = session.get("next_after_login")
    with atomic():
        logins.end(session.get("sid"))  # the session this browser had before, if any
        sid = logins.start(db.session.get(User, user.id), current_app.permanent_session_lifetime)
    session.clear()
    login_user(user)
    session["sid"] = sid
    if next_url:
        session["next_after_login"] = next_url


def end_session() -> None:
    """Log out here and on the server: this session's cookie, and any copy of it, stops working."""
    with atomic():
        logins.end(session.get("sid"))
    logout_user()
    session.clear()


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _throttled_source() -> str:
    """Who a per-address throttle counts: an IPv4 address, or an IPv6 /64.

    One IPv6 host is routinely given a whole /64: counted per address, one machine would have
    billions of separate budgets for sign-ups, logins and reset mails.
    """
    return security_notices.network_of(_client_ip(), ipv4_prefix=32) or _client_ip()


def _login_limits(email: str) -> tuple[Limit, ...]:
    account, ip = users.login_key(email), _throttled_source()
    return (Limit(f"login:acct-ip:{account}:{ip}", LOGIN_LIMIT_ACCOUNT_IP, LOGIN_WINDOW),
            Limit(f"login:ip:{ip}", LOGIN_LIMIT_IP, LOGIN_WINDOW),
            Limit(f"login:acct:{account}", LOGIN_LIMIT_ACCOUNT, 3600))


def _two_factor_limits(user: User) -> tuple[Limit, ...]:
    return (Limit(f"2fa:acct-ip:{user.id}:{_throttled_source()}", TWO_FACTOR_LIMIT_ACCOUNT_IP, LOGIN_WINDOW),
            Limit(f"2fa:acct:{user.id}", TWO_FACTOR_LIMIT_ACCOUNT, 3600))


def _succeeded(limits: tuple[Limit, ...]) -> None:
    """The right secret: this address starts afresh for this account, and the attempt counts nowhere."""
    narrow, *wider = limits
    ratelimit.reset(narrow.key)
    for limit in wider:
        ratelimit.release(limit.key)


def _minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return ngettext("%(num)d minute", "%(num)d minutes", minutes)


def _register_limits() -> tuple[Limit, Limit]:
    """(completed sign-ups, failed ones) from this address (an IPv6 /64)."""
    ip = _throttled_source()
    return (Limit(f"register:{ip}", REGISTER_LIMIT_IP, REGISTER_WINDOW),
            Limit(f"register-failed:{ip}", REGISTER_FAILURE_LIMIT_IP, REGISTER_WINDOW))


def _too_many_sign_ups(form, terms, wait: int):
    form.email.errors = [*form.email.errors,
                         _("Too many sign-ups from your network. Try again in %(wait)s.", wait=_minutes(wait))]
    return render_template("auth/register.html", form=form, terms=terms), 429


@bp.route("/register", methods=["GET", "POST"])
@rerender_on_csrf_error
def register():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    if request.method == "GET" and session.get(_SIGNED_UP):
        return render_template("auth/check_inbox.html", email=session.pop(_SIGNED_UP))
    terms = legal.current(LegalKind.TERMS)
    form = RegisterForm()
    if terms is None:
        return render_template("auth/register.html", form=None, terms=None)
    completed, failed = _register_limits()
    if form.is_submitted() and ratelimit.counters().count(failed.key) >= failed.limit:
        return _too_many_sign_ups(form, terms, ratelimit.counters().retry_after(failed.key))
    if form.validate_on_submit():
        wait = ratelimit.take(completed)  # before the account is made, so parallel sign-ups count too
        if wait is not None:
            return _too_many_sign_ups(form, terms, wait)
        try:
            with atomic():
                result = users.register(form.email.data, form.password.data, terms, _client_ip())
                if result.user is not None and i18n.language() != i18n.DEFAULT:
                    result.user.locale = i18n.language()  # its mail, from the first, in the language they signed up in
        except InvalidInput as exc:
            ratelimit.release(completed.key)
            ratelimit.hit(failed.key, failed.window)
            message = _("Enter an email address like name@example.com.") if exc.field != "password" else \
                _("Use at least %(num)d characters.", num=users.MIN_PASSWORD_LENGTH)
            (form.password if exc.field == "password" else form.email).errors.append(message)
        else:
            # An address that already has an account stays counted as a completed sign-up: the
            # caller sees the same page either way, and a counter of its own would tell them which.
            if result.verify_token:
                with mail.localized(result.user.locale):
                    mail.send(result.user.email, _("Confirm your email address"),
                              render_template("mail/verify.txt", link=links.public_url("auth.verify",
                                                                                     token=result.verify_token)))
            elif ratelimit.hit(f"register-notice:{result.existing.id}", 86400) <= 3:  # no mail bombing
                with mail.localized(result.existing.locale):
                    mail.send(result.existing.email, _("Someone tried to register with your address"),
                              render_template("mail/already_registered.txt", login=links.public_url("auth.login"),
                                              reset=links.public_url("auth.forgot")))
            session[_SIGNED_UP] = form.email.data.strip()
            return redirect(url_for("auth.register"), 303)
    elif form.is_submitted():
        ratelimit.hit(failed.key, failed.window)  # a form with errors (or without its CSRF token)
    status = INVALID if form.errors else 200
    return render_template("auth/register.html", form=form, terms=terms), status


@bp.get("/verify/<token>")
def verify(token: str):
    try:
        with atomic():
            user = users.verify_email(token, current_app.config["SIGNUP_CREDIT"])
            credit = user.account.balance
    except DomainError:
        return render_template("message.html", title=_("Link not valid"),
                               message=_("This link is invalid, already used or expired. Ask for a new one."),
                               action=(url_for("auth.login"), _("Log in to get a new link"))), 400
    if credit:
        flash(_("Thank you: %(email)s is verified. You can create API keys now. Your balance is %(balance)s.",
                email=user.email, balance=usd(credit)))
    else:
        flash(_("Thank you: %(email)s is verified. You can create API keys now.", email=user.email))
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    # The login form comes filled in with the address, from the session rather than the URL
    # (addresses in URLs end up in access logs and browser history).
    session["login_email"] = user.email
    return redirect(url_for("auth.login"))


@bp.post("/verify/resend")
@login_required
def resend_verification():
    if current_user.is_verified:
        return redirect(url_for("dashboard.index"))
    if ratelimit.hit(f"verify-resend:{current_user.id}", 3600) > 5:
        flash(_("We sent several links already. Check your spam folder, or try again in an hour."))
        return redirect(url_for("dashboard.index"))
    with atomic():
        user = db.session.get(User, current_user.id)
        token = users.email_links.issue(user, users.TokenPurpose.VERIFY)
    with mail.localized(current_user.locale):
        mail.send(current_user.email, _("Confirm your email address"),
                  render_template("mail/verify.txt", link=links.public_url("auth.verify", token=token)))
    flash(_("A new confirmation link is on its way to %(email)s.", email=current_user.email))
    return redirect(url_for("dashboard.index"))


@bp.get("/verify/resend")
def resend_verification_again():
    """A reload or a bookmark of the resend form's address: the dashboard, where the form is; nothing
    is sent. (Without this rule, /verify/<token> would read "resend" as a link and call it invalid.)"""
    return redirect(url_for("dashboard.index"), 303)


@bp.route("/login", methods=["GET", "POST"])
@rerender_on_csrf_error
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    if not form.is_submitted() and session.get("login_email"):
        # Just verified (see `verify`): their address is filled in; the password is next.
        form.email.data = session["login_email"]
        form.password.render_kw = {**(form.password.render_kw or {}), "autofocus": True}
    if form.validate_on_submit():
        email = form.email.data.strip()
        limits = _login_limits(email)
        wait = ratelimit.take(*limits)  # reserved before the check, so parallel guesses count too
        if wait is not None:
            form.password.errors.append(_("Too many failed attempts. Try again in %(wait)s.", wait=_minutes(wait)))
            return render_template("auth/login.html", form=form), 429
        with atomic():  # a successful check may rehash the password with newer parameters
            user = users.authenticate_password(email, form.password.data)
        if user is None:
            form.password.errors.append(_("Email or password is not correct."))
            return render_template("auth/login.html", form=form), INVALID
        _succeeded(limits)
        if not user.is_active:
            form.password.errors.append(_("This account is not active. Contact us if you think this is a mistake."))
        elif user.totp_enabled_at is not None:
            session.clear()
            session["2fa"] = {"user": user.id, "epoch": user.session_epoch, "next": request.args.get("next")}
            return redirect(url_for("auth.two_factor"))
        else:
            start_session(user)
            _note_sign_in(user)
            return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form), INVALID if form.errors else 200


def _note_sign_in(user: User) -> None:
    """Remember the sign-in's network; mail the owner (after the commit) when it is new to the account."""
    with atomic():
        new = security_notices.note_sign_in(user.id, _client_ip())
    if new:
        security_notices.notify(current_app._get_current_object(), security_notices.NEW_ADDRESS, user.id,
                                _client_ip())


@bp.route("/login/2fa", methods=["GET", "POST"])
@rerender_on_csrf_error
def two_factor():
    pending = session.get("2fa")
    user = db.session.get(User, pending["user"]) if pending else None
    if user is None or user.session_epoch != pending["epoch"] or not user.is_active:
        session.pop("2fa", None)
        return redirect(url_for("auth.login"))
    form = TwoFactorForm()
    if form.validate_on_submit():
        limits = _two_factor_limits(user)
        wait = ratelimit.take(*limits)  # reserved before the check, so parallel guesses count too
        if wait is not None:
            form.code.errors.append(_("Too many wrong codes. Try again in %(wait)s.", wait=_minutes(wait)))
            return render_template("auth/two_factor.html", form=form), 429
        with atomic():
            ok = twofactor.check(db.session.get(User, user.id), form.code.data)
        if ok:
            _succeeded(limits)
            next_url = pending.get("next")
            start_session(user)
            _note_sign_in(user)
            return redirect(safe_next(next_url))
        form.code.errors.append(_("That code is not valid. Enter the 6 digits your app shows now, "
                                  "or one of your recovery codes."))
    return render_template("auth/two_factor.html", form=form), INVALID if form.errors else 200


@bp.post("/logout")
@login_required
def logout():
    end_session()
    flash(_("You are logged out."))
    return redirect(url_for("pages.home"))


@bp.route("/forgot", methods=["GET", "POST"])
@rerender_on_csrf_error
def forgot():
    if request.method == "GET" and session.pop(_RESET_SENT, None):
        return render_template("message.html", title=_("Check your inbox"),
                               message=_("If an account uses that address, a link to reset its password is on its "
                                         "way. The link works for one hour."))
    form = EmailForm()
    if form.validate_on_submit():
        if ratelimit.hit(f"forgot:{_throttled_source()}", 3600) <= 10:
            with atomic():
                found = users.request_password_reset(form.email.data)
            if found:
                user, token = found
                with mail.localized(user.locale):
                    mail.send(user.email, _("Reset your password"),
                              render_template("mail/reset.txt", link=links.public_url("auth.reset", token=token)))
        session[_RESET_SENT] = True  # the same for any address: the page tells no one which have accounts
        return redirect(url_for("auth.forgot"), 303)
    return render_template("auth/forgot.html", form=form), INVALID if form.errors else 200


@bp.route("/reset/<token>", methods=["GET", "POST"])
@rerender_on_csrf_error
def reset(token: str):
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            with atomic():
                user_id = users.reset_password(token, form.password.data).id
        except DomainError:
            return render_template("message.html", title=_("Link not valid"),
                                   message=_("This link is invalid, already used or expired. Ask for a new one."),
                                   action=(url_for("auth.forgot"), _("Ask for a new link"))), 400
        end_session()
        security_notices.notify(current_app._get_current_object(), security_notices.PASSWORD_CHANGED, user_id,
                                _client_ip())
        flash(_("Your password is changed. Log in with the new one."))
        return redirect(url_for("auth.login"))
    return render_template("auth/reset.html", form=form), INVALID if form.errors else 200


@bp.route("/consent", methods=["GET", "POST"])
@rerender_on_csrf_error
@login_required
def consent():
    declined = session.pop(_DECLINED, None) if request.method == "GET" else None
    refund = refunds.open_request(current_user) if declined else None
    if refund is not None and refund.id == declined:
        return render_template("auth/refund_received.html", refund=refund,
                               refundable=refunds.refundable(db.session.get(User, current_user.id).account))
    terms = legal.needs_consent(current_user)
    if terms is None:
        return redirect(url_for("dashboard.index"))
    form = ConsentForm()
    if form.validate_on_submit():
        if request.form.get("decision") == "accept":
            with atomic():
                user = db.session.get(User, current_user.id)
                legal.accept(user, terms, _client_ip())
                cancelled = refunds.cancel_open(user)
            if terms.kind == LegalKind.PRIVACY.value:
                flash(_("Thank you for accepting the privacy policy (version %(version)s).", version=terms.version))
            else:
                flash(_("Thank you for accepting the terms of service (version %(version)s).", version=terms.version))
            if cancelled is not None:
                flash(_("Your refund request of %(amount)s is cancelled: the balance stays on your account. Your "
                        "earlier API keys stay revoked; create a new one to go on.",
                        amount=usd(cancelled.balance_at_request)))
            return redirect(safe_next(request.args.get("next")))
        with atomic():
            user = db.session.get(User, current_user.id)
            legal.decline(user, terms, _client_ip(), form.reason.data)  # listed in the console
            refund = refunds.request(user, form.reason.data or "declined the new terms")
            apikeys.revoke_all(user)
        session[_DECLINED] = refund.id
        return redirect(url_for("auth.consent"), 303)
    refund = refunds.open_request(current_user)
    return render_template("auth/consent.html", form=form, terms=terms, html=legal.render(terms), refund=refund)


def require_consent():
    """Keep a logged-in user on the consent page until they accept significant new terms.

    Not in the console: the operator publishes the terms rather than agreeing to them as a
    customer, and must reach the console right after publishing (their own portal pages still ask).
    """
    # The blueprint first: asking who is logged in loads the login session, which an API call never has.
    if request.blueprint in (None, "proxy", "pages", "admin", "status", "health") \
            or request.endpoint in ("auth.consent", "auth.logout", "static") or not current_user.is_authenticated:
        return None
    if legal.needs_consent(current_user):
        if request.headers.get("HX-Request"):
            response = current_app.response_class(status=204)
            response.headers["HX-Redirect"] = url_for("auth.consent")
            return response
        return redirect(url_for("auth.consent", next=request.full_path.rstrip("?")))
    return None

