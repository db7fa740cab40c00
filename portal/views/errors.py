"""Readable error pages for the portal (the /v1 API answers JSON instead; see proxy)."""
from flask import current_app, jsonify, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

MESSAGES = {
    400: "The request was not understood.",
    403: "You may not do that.",
    404: "There is nothing at this address.",
    405: "That action is not possible here.",
    413: "What you sent is too large.",
    429: "Too many requests; wait a little and try again.",
}


def error_page(exc: HTTPException):
    """The portal's page for an HTTP error."""
    if isinstance(exc, CSRFError):
        title, message = "Please try again", ("This form expired or came from another site. Reload the page "
                                              "and send it again.")
    else:
        title, message = exc.name, MESSAGES.get(exc.code, exc.description)
    return render_template("message.html", title=title, message=message,
                           action=(url_for("pages.home"), "Go to the home page")), exc.code


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
    page = current_app.jinja_env.get_template("errors/database_unavailable.html").render()
    return page, 503, headers
