"""Readable error pages for the portal (the /v1 API answers JSON instead; see proxy)."""
from urllib.parse import urlsplit

from flask import current_app, jsonify, render_template, request, session, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

TITLES = {
    400: _l("Bad request"),
    403: _l("Not allowed"),
    404: _l("Page not found"),
    405: _l("Not possible here"),
    413: _l("Too large"),
    429: _l("Too many requests"),
    500: _l("Something went wrong"),
    503: _l("Temporarily unavailable"),
}
MESSAGES = {
    400: _l("The request was not understood."),
    403: _l("You may not do that."),
    404: _l("There is nothing at this address."),
    405: _l("That action is not possible here."),
    413: _l("What you sent is too large."),
    429: _l("Too many requests; wait a little and try again."),
    500: _l("Something went wrong on our side. Nothing you sent was charged; please try again."),
    503: _l("The site is not available just now. Please try again in a minute."),
}


def error_page(exc: HTTPException):
    """The portal's page for an HTTP error, in the person's language."""
    if isinstance(exc, MethodNotAllowed) and request.method in ("GET", "HEAD"):
        page = page_of_form(request.path)
        if page is not None:
            from .htmx import redirect_to
            return redirect_to(request.script_root + page)
    if isinstance(exc, CSRFError):
        title, message = _("Please try again"), _("This form expired or came from another site. Reload the page "
                                                  "and send it again.")
    else:
        # Werkzeug's own name and description for a code we have no words for (rare: 410, 415...).
        title = TITLES.get(exc.code, exc.name)
        message = MESSAGES.get(exc.code, exc.description)
    return render_template("message.html", title=title, message=message,
                           action=(url_for("pages.home"), _("Go to the home page"))), exc.code


# Blueprints whose POST-only URLs keep their 405 on GET: callers there are machines, not people.
_MACHINE_BLUEPRINTS = ("proxy", "webhooks")


def page_of_form(path: str) -> str | None:
    """The page to send a GET of a URL that only takes a form: the nearest page above it.

    A reload after a refused form, the back button or a bookmark asks for the URL the form was
    posted to, and must not meet 405 (post/redirect/get); a GET never acts. /admin/users/5/limits
    goes to /admin/users/5, /admin/models/3/prices/7/withdraw to /admin/models/3, /logout to /.
    None when the URL is not a form's (another method) or belongs to a machine-facing blueprint.
    """
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        endpoint, _values = adapter.match(path, method="POST")
    except (HTTPException, RequestRedirect):
        return None
    if endpoint.partition(".")[0] in _MACHINE_BLUEPRINTS:
        return None
    parts = path.rstrip("/").split("/")
    while len(parts) > 1:
        parts.pop()
        candidate = "/".join(parts) or "/"
        try:
            adapter.match(candidate, method="GET")
        except RequestRedirect as moved:  # the page's canonical address (a trailing slash)
            return urlsplit(moved.new_url).path
        except (MethodNotAllowed, NotFound):
            continue
        return candidate
    return None


def database_unavailable(exc: Exception):
    """The portal's 503 page while the database is unreachable; any other database error is a bug (500).

    The page is rendered straight from the template, skipping the context processors: they read
    the database too (branding, the signed-in user).
    """
    from ..database import RETRY_AFTER_SECONDS, log_unavailable, unavailable

    if not unavailable(exc):
        raise exc  # Flask's own handling: logged with its traceback, a 500 page
    log_unavailable(exc, request.path)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    if request.path.endswith(".json"):  # /status.json, exports: their readers parse JSON, in an outage too
        return jsonify(status="unavailable", error="the database is unreachable; retry shortly"), 503, headers
    with force_locale(_language_without_database()):
        page = current_app.jinja_env.get_template("errors/database_unavailable.html").render()
    return page, 503, headers


def _language_without_database() -> str:
    """This request's language when the account (which may hold the choice) cannot be read."""
    from ..i18n import DEFAULT, LANGUAGES, language

    try:
        return language()  # chosen earlier in this request, or the account was already loaded
    except Exception:  # the account's choice is in the database that is away: the session's, or the browser's
        chosen = session.get("lang")
        return chosen if chosen in LANGUAGES else request.accept_languages.best_match(LANGUAGES, DEFAULT)
