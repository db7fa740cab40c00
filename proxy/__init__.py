"""The /v1 API: OpenAI- and Anthropic-compatible routes with their own JSON errors.

It authenticates by API key only and never reads the portal's session cookie.
"""
import logging

from flask import Blueprint, Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from portal import database, maintenance

from .errors import ApiError
from .pipeline import Gateway
from .protocols import error_shape

log = logging.getLogger(__name__)
bp = Blueprint("proxy", __name__, url_prefix="/v1")


def error_response(error: ApiError):
    response = jsonify(error.body(error_shape(request.path)))
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


_HTTP_MESSAGES = {
    404: "Unknown API route {path}. See the README for the routes this gateway serves.",
    405: "{method} is not allowed on {path}.",
    413: "The request body is larger than this gateway accepts ({limit} bytes).",
}


def http_error(exc: HTTPException):
    """An HTTP error (unknown route, wrong method, body too large) in the API's JSON shape."""
    message = _HTTP_MESSAGES.get(exc.code, exc.description or exc.name).format(
        path=request.path, method=request.method, limit=request.max_content_length)
    return error_response(ApiError(exc.code or 500, message, code="unknown_route" if exc.code == 404 else None))


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    if database.unavailable(exc):
        # An outage, not a bug: one log line (no traceback), and a 503 the SDKs retry.
        database.log_unavailable(exc, request.path)
        wait = database.RETRY_AFTER_SECONDS
        return error_response(ApiError(503, f"The gateway's database is unreachable; nothing was charged. "
                                            f"Retry in {wait} seconds.", code="database_unavailable",
                                       headers={"Retry-After": str(wait)}))
    log.exception("unhandled error on %s", request.path)
    return error_response(ApiError(500, "The gateway failed unexpectedly; any hold placed for this call "
                                        "is settled or released, never charged twice."))


def refuse_during_maintenance():
    """Every /v1 call gets 503 while maintenance is on, before anything is read or held.

    Cheap: the state comes from a per-process cache of at most a second (portal.sitesettings)."""
    state = maintenance.current()
    if state is None:
        return None
    until = f" until {state.until:%Y-%m-%d %H:%M} UTC" if state.until else ""
    message = f" {state.message.rstrip()}" if state.message else ""
    if message and not message.endswith((".", "!", "?")):
        message += "."
    wait = state.retry_after()
    raise ApiError(503, f"The service is down for maintenance{until}; nothing was charged.{message} "
                        f"Retry in {wait} seconds.", code="maintenance", headers={"Retry-After": str(wait)})


bp.before_request(refuse_during_maintenance)
bp.register_error_handler(ApiError, error_response)
bp.register_error_handler(Exception, _unexpected)


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def init_app(app: Flask) -> None:
    from . import routes  # noqa: F401  (registers the views on bp)

    app.extensions["tollgate.gateway"] = Gateway(app)
    app.register_blueprint(bp)
