"""Response headers that every page carries, and readable error pages for the portal."""
from flask import Flask, render_template, url_for
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
    """The portal's page for an HTTP error (the /v1 API answers JSON instead; see proxy)."""
    if isinstance(exc, CSRFError):
        title, message = "Please try again", ("This form expired or came from another site. Reload the page "
                                              "and send it again.")
    else:
        title, message = exc.name, MESSAGES.get(exc.code, exc.description)
    return render_template("message.html", title=title, message=message,
                           action=(url_for("pages.home"), "Go to the home page")), exc.code

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'")


def init_app(app: Flask) -> None:
    @app.after_request
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
