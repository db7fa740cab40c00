"""Response headers that every response carries, and input no view should have to handle."""
import re

from flask import Flask, abort, current_app, request
from markupsafe import escape
from werkzeug.exceptions import SecurityError

import proxy

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'")
# Two years. Not includeSubDomains: the operator's other subdomains are not ours to decide.
HSTS = "max-age=63072000"


def no_store(response):
    """Keep a page that shows a secret (a new key, a TOTP secret, recovery codes) out of every cache."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"  # HTTP/1.0 caches
    return response


# NUL cannot be stored in Postgres text, and a lone surrogate cannot be encoded as UTF-8: either
# would fail deep inside the database as a 500. Neither belongs in anything a person typed.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Portal endpoints that take a JSON body (a payment webhook, say) and read it themselves.
JSON_ENDPOINTS: set[str] = {"webhooks.stripe_webhook"}


def refuse_unreadable_input():
    """400 for a portal request with text the database cannot hold, or with a JSON body.

    The portal takes forms. Flask-WTF would fill a form from a JSON body instead, where nesting
    100,000 deep, lists, objects and lone surrogates all end in a 500 somewhere further on.
    """
    if proxy.is_api_path(request.path):
        return None  # the API reads JSON bodies itself and answers in its own error shape
    if request.is_json and request.method not in ("GET", "HEAD", "OPTIONS") and request.endpoint not in JSON_ENDPOINTS:
        abort(400)
    values = [request.path, *(text for pair in request.args.items(multi=True) for text in pair)]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values += [text for pair in request.form.items(multi=True) for text in pair]
    if any(UNSTORABLE.search(v) for v in values):
        abort(400)
    return None


# Paths that answer for any Host (see refuse_untrusted_host), and their views.
ANY_HOST = {"/healthz": "health.healthz", "/readyz": "health.readyz", "/metrics": "health.metrics_page"}


def refuse_untrusted_host():
    """Answer a request for a host not in TRUSTED_HOSTS at once, before other hooks build URLs.

    Flask sets the error aside while routing and would otherwise run every before-request hook
    (CSRF, consent redirects) without the means to build a single URL.

    The health checks and metrics answer whatever the Host: a load balancer's probe or a
    Prometheus scrape addresses the machine (10.0.0.5:8000, app1.internal:8000), not the site,
    and these views build nothing from the name.
    """
    if isinstance(request.routing_exception, SecurityError):
        endpoint = ANY_HOST.get(request.path)
        if endpoint is not None and request.method in ("GET", "HEAD"):
            return current_app.view_functions[endpoint]()
        raise request.routing_exception
    return None


def untrusted_host_page():
    """The page for a request to a host this site does not answer to: without templates, which need URLs."""
    root = escape(current_app.config["PUBLIC_URL"])
    body = (f'<!doctype html><html lang="en"><meta charset="utf-8"><title>Wrong address</title>'
            f'<h1>Wrong address</h1><p>This site is at <a href="{root}/">{root}</a>.</p></html>')
    return current_app.response_class(body, status=400, mimetype="text/html")


def init_app(app: Flask) -> None:
    production = app.config["PORTAL_ENV"] == "production"
    # First of all before-request hooks, whenever they were registered.
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_untrusted_host)
    app.before_request(refuse_unreadable_input)

    @app.after_request
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if production:
            # Production is served over https only (PUBLIC_URL must be https): tell browsers so,
            # so that no later visit starts on plain http where it could be intercepted.
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
