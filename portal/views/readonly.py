"""A suspended person's portal is read-only, decided here for every request at once.

They may log in and read (balance, statement, usage, the legal pages), download their data,
write to the operator (that is how people appeal), answer a terms re-consent, and log out.
Any other request that would change something (a POST, or one of the few GETs that act) is
answered with a page saying the account is suspended, why, and how to appeal. The console is
closed to a suspended admin as well. The proxy never gets here: keys of a suspended account are
refused by apikeys.authenticate.
"""
from flask import current_app, render_template, request, url_for
from flask_login import current_user

# Requests a suspended person may still send that change something.
ALLOWED = frozenset({"auth.logout", "pages.contact", "auth.consent", "auth.login", "auth.two_factor"})
# GET routes that act rather than show (a link from a mail).
ACTING_GETS = frozenset({"account.confirm_email"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATUS = 403


def refuse_changes():
    """before_request: a suspended person's changes are refused with the reason and the way to appeal."""
    if request.blueprint in (None, "proxy", "webhooks") or request.endpoint == "static":
        return None  # the API and Stripe never carry a portal session
    if not current_user.is_authenticated or not current_user.is_suspended:
        return None
    if request.endpoint in ALLOWED:
        return None
    if request.blueprint != "admin" and request.method in SAFE_METHODS and request.endpoint not in ACTING_GETS:
        return None
    return suspended_response()


def suspended_response():
    if request.headers.get("HX-Request"):
        # htmx does not swap a 403: send the whole browser to the page that explains it.
        response = current_app.response_class(status=204)
        response.headers["HX-Redirect"] = url_for("account.suspended")
        return response
    return render_template("account/suspended.html"), STATUS
