"""The /v1 API: OpenAI- and Anthropic-compatible routes with their own JSON errors.

It authenticates by API key only and never reads the portal's session cookie.
"""
import logging

from flask import Blueprint, Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from portal import database, maintenance

from .errors import ApiError, _, sentences
from .pipeline import Gateway
from .protocols import error_shape

log = logging.getLogger(__name__)
bp = Blueprint("proxy", __name__, url_prefix="/v1")


def error_response(error: ApiError):
    response = jsonify(error.body(error_shape(request.path)))
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _http_message(exc: HTTPException) -> str:
    values = {"path": request.path, "method": request.method, "limit": request.max_content_length}
    if exc.code == 404:
        return _("Unknown API route %(path)s. See the README for the routes this gateway serves.", **values)
    if exc.code == 405:
        return _("%(method)s is not allowed on %(path)s.", **values)
    if exc.code == 413:
        return _("The request body is larger than this gateway accepts (%(limit)s bytes).", **values)
    return exc.description or exc.name


def http_error(exc: HTTPException):
    """An HTTP error (unknown route, wrong method, body too large) in the API's JSON shape."""
    message = _http_message(exc)
    return error_response(ApiError(exc.code or 500, message, code="unknown_route" if exc.code == 404 else None))


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    if database.unavailable(exc):
        # An outage, not a bug: one log line (no traceback), and a 503 the SDKs retry.
        database.log_unavailable(exc, request.path)
        wait = database.RETRY_AFTER_SECONDS
        return error_response(ApiError(503, _("The gateway's database is unreachable; nothing was charged. "
                                              "Retry in %(wait)s seconds.", wait=wait), code="database_unavailable",
                                       headers={"Retry-After": str(wait)}))
    log.exception("unhandled error on %s", request.path)
    return error_response(ApiError(500, _("The gateway failed unexpectedly; any hold placed for this call "
                                          "is settled or released, never charged twice.")))


def refuse_during_maintenance():
    """Every /v1 call gets 503 while maintenance is on, before anything is read or held.

    Cheap: the state comes from a per-process cache of at most a second (portal.sitesettings)."""
    state = maintenance.current()
    if state is None:
        return None
    message = state.message.rstrip() if state.message else ""  # the operator's words, as written
    if message and not message.endswith((".", "!", "?", "。", "！", "？")):
        message += "."
    wait = state.retry_after()
    until = state.until.strftime("%Y-%m-%d %H:%M") if state.until else None
    down = (_("The service is down for maintenance until %(until)s UTC; nothing was charged.", until=until) if until
            else _("The service is down for maintenance; nothing was charged."))
    raise ApiError(503, sentences(down, message, _("Retry in %(wait)s seconds.", wait=wait)),
                   code="maintenance", headers={"Retry-After": str(wait)})


bp.before_request(refuse_during_maintenance)
bp.register_error_handler(ApiError, error_response)
bp.register_error_handler(Exception, _unexpected)


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def init_app(app: Flask) -> None:
    from . import routes  # noqa: F401  (registers the views on bp)

    app.extensions["tollgate.gateway"] = Gateway(app)
    app.register_blueprint(bp)
