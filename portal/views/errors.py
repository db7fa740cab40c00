"""Readable error pages for the portal (the /v1 API answers JSON instead; see proxy)."""
from flask import render_template, url_for
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
