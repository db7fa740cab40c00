"""Logging for a serving process: one access line per request, request ids, JSON or text, masked secrets.

`configure_serving(config)` is called once by `serve` (and the other serving entry points) before
the workers start: it puts one handler on the root logger, in LOG_FORMAT (text or json), with two
filters: one stamps every record with the current request's id, the other masks anything that
looks like a secret (our API keys, `Bearer ...`, sk-/sk-ant- upstream keys, Stripe keys). The
masking is a safety net, not the rule: code should never log a secret in the first place.

`RequestLog` is WSGI middleware (installed by create_app, so tests and every server get it): it
gives each request an id, adds `X-Request-Id` to every response, and writes the access line when
the response body is closed, so a long stream logs when it ends, with its real duration.
"""
import contextvars
import json
import logging
import re
import secrets
import sys
import time
from datetime import datetime, timezone
from typing import Optional

ACCESS_LOGGER = "tollgate.access"
COMMAND_LOGGER = "tollgate.command"
REQUEST_ID_KEY = "tollgate.request_id"  # in the WSGI environ
ROUTE_KEY = "tollgate.route"  # the matched URL rule, set by the app (bounded label for metrics)
MODEL_KEY = "tollgate.model"  # the public model id of a proxied call, set by the proxy

_request_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("tollgate_request_id", default=None)
# The public model of the proxied call being served on this thread, for the request metric.
_model: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("tollgate_model", default=None)

# An incoming X-Request-Id is kept only when short and plain, so it cannot forge log lines.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

MASK = "***"
# Order matters: the specific shapes first, so `sk-ant-...` is not half-masked as `sk-...`.
_SECRET_PATTERNS = [
    (re.compile(r"\btg_[A-Za-z0-9]{8,}"), "tg_" + MASK),  # our API keys (portal/apikeys.py)
    (re.compile(r"(?i)\bbearer\s+[^\s,;\"']+"), "Bearer " + MASK),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{6,}"), "sk-ant-" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + MASK),
    (re.compile(r"\b(sk|rk)_(live|test)_[A-Za-z0-9_]{6,}"), r"\1_\2_" + MASK),  # Stripe secret keys
    (re.compile(r"\bwhsec_[A-Za-z0-9_]{6,}"), "whsec_" + MASK),  # Stripe webhook secrets
    # key=value or "key": "value" for the obvious names (a password in a logged form or URL).
    (re.compile(r"(?i)((?:password|passwd|api[_-]?key|secret|token|authorization)[\"']?\s*[:=]\s*[\"']?)"
                r"[^\s\"'&,;}]+"), r"\1" + MASK),
    (re.compile(r"(?i)(\w+://[^:/@\s]*:)[^@\s]+@"), r"\1" + MASK + "@"),  # passwords in URLs
]


def mask_secrets(text: str) -> str:
    """`text` with everything that looks like a key, token or password replaced by ***."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class SecretMask(logging.Filter):
    """Rewrite a record's message, exception text and stack so no secret-looking string survives."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what we can rather than lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = mask_secrets(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True


class RequestIdStamp(logging.Filter):
    """Give every record a `request_id` attribute: the current request's, or "-" outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get() or "-"
        return True


_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                line[name] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class _ServingHandler(logging.StreamHandler):
    """The handler configure_serving installs; marked so a second call replaces it, not doubles it."""


def configure_serving(config, stream=None) -> logging.Handler:
    """Send all logs to stderr (or `stream`) in LOG_FORMAT, stamped with request ids, secrets masked."""
    handler = _ServingHandler(stream or sys.stderr)
    if (config.get("LOG_FORMAT") or "text") == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    install_filters(handler)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ServingHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.get("LOG_LEVEL") or logging.INFO)
    # Werkzeug's request log would double ours; SQLAlchemy logs every statement and its
    # parameters at INFO (its echo), which a root logger at INFO would otherwise turn on.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    return handler


def install_filters(handler: logging.Handler) -> logging.Handler:
    """Add the request-id stamp and the secret mask to `handler` (filters on a handler see every record)."""
    handler.addFilter(RequestIdStamp())
    handler.addFilter(SecretMask())
    return handler


def current_request_id() -> Optional[str]:
    return _request_id.get()


def set_request_id(environ: Optional[dict], request_id: str) -> None:
    """Adopt `request_id` for the rest of this request: later log lines and the access line carry it.

    The proxy calls this with the call's own id, so a /v1 call's logs, its access line, its
    X-Request-Id header and its usage record all share one id.
    """
    _request_id.set(request_id)
    if environ is not None:
        environ[REQUEST_ID_KEY] = request_id


def note_model(public_id: str) -> None:
    """Label this request's metric with the call's model (set by the proxy once the model is known)."""
    _model.set(public_id)


def note_route():
    """before_request: keep the matched URL rule (not the raw path, so metric labels stay few)."""
    from flask import request

    if request.url_rule is not None:
        request.environ[ROUTE_KEY] = request.url_rule.rule
    return None


def incoming_request_id(value: Optional[str]) -> str:
    """The client's X-Request-Id when it is short and safe, else a fresh one."""
    if value and _SAFE_REQUEST_ID.match(value):
        return value
    return "r_" + secrets.token_hex(8)


class RequestLog:
    """WSGI middleware: a request id, the X-Request-Id header, the access line and the request metric."""

    def __init__(self, app):
        self.app = app
        self.access = logging.getLogger(ACCESS_LOGGER)

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        environ[REQUEST_ID_KEY] = incoming_request_id(environ.get("HTTP_X_REQUEST_ID"))
        token = _request_id.set(environ[REQUEST_ID_KEY])
        _model.set(None)
        state = {"status": 500}

        def start(status, headers, exc_info=None):
            state["status"] = int(status.split(" ", 1)[0])
            found = [value for name, value in headers if name.lower() == "x-request-id"]
            if found:
                environ[REQUEST_ID_KEY] = found[-1]  # the proxy's call id wins
            else:
                headers = list(headers) + [("X-Request-Id", environ[REQUEST_ID_KEY])]
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            self._finish(environ, state, started)
            _request_id.reset(token)
            raise
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body, wrapper):
            # A file sent by the server itself (static files): wrapping it would lose the fast path.
            self._finish(environ, state, started)
            _request_id.reset(token)
            return body
        # The id stays set while waitress iterates the body on this same thread; _Closing resets it.
        return _Closing(body, lambda: self._finish(environ, state, started), token)

    def _finish(self, environ, state, started) -> None:
        from . import metrics

        duration_ms = (time.perf_counter() - started) * 1000
        request_id = environ.get(REQUEST_ID_KEY) or "-"
        status = state["status"]
        try:
            model = environ.get(MODEL_KEY) or _model.get() or ""
            metrics.request_answered(environ.get(ROUTE_KEY) or "unmatched", model, status)
        except Exception:  # metrics must never break a response
            logging.getLogger(__name__).debug("recording the request metric failed", exc_info=True)
        self.access.info("%s %s %s %.1fms", environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "") or "/",
                         status, duration_ms,
                         extra={"request_id": request_id, "method": environ.get("REQUEST_METHOD", "-"),
                                "path": environ.get("PATH_INFO", "") or "/", "status": status,
                                "duration_ms": round(duration_ms, 1)})


# -- operator commands -------------------------------------------------------------------------


def log_commands(group) -> None:
    """Make every command under `group` log one line when it ends: its name and exit status.

    Never its arguments: some carry secrets (`upstreams update --api-key`).
    """
    for command in list(getattr(group, "commands", {}).values()):
        if hasattr(command, "commands"):
            log_commands(command)
        elif not getattr(command, "_tollgate_logged", False):
            command.invoke = _logged(command.invoke)
            command._tollgate_logged = True


def _logged(invoke):
    def run(ctx):
        _command_logging(ctx)
        status = 0
        try:
            return invoke(ctx)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            raise
        except BaseException as exc:  # click's own exceptions carry the status the process will exit with
            status = getattr(exc, "exit_code", 1)
            raise
        finally:
            name = _command_name(ctx)
            logging.getLogger(COMMAND_LOGGER).info("command %s exited %s", name, status,
                                                   extra={"command": name, "exit_status": status})
    return run


def _command_name(ctx) -> str:
    """"upstreams update": the command's names without the program's ("flask", "python -m flask")."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(reversed(names)) or ctx.info_name or "-"


def _command_logging(ctx) -> None:
    """With LOG_FORMAT=json and no logging set up (a command from cron or a unit): warnings and the
    command line go to stderr as JSON, masked. In text mode a command's stderr stays what the
    operator reads (its own messages only); `serve` sets up its own logging (configure_serving)."""
    from flask.cli import ScriptInfo

    root = logging.getLogger()
    info = ctx.find_object(ScriptInfo)
    if root.handlers or info is None:
        return
    app = info.load_app()
    if app.testing or app.config.get("LOG_FORMAT") != "json":
        return
    handler = configure_serving(app.config)
    root.setLevel(logging.WARNING)
    handler.setLevel(logging.NOTSET)
    logging.getLogger(COMMAND_LOGGER).setLevel(logging.INFO)


class _Closing:
    """A response body that runs `on_close` once, when the server closes it (after the last byte)."""

    def __init__(self, body, on_close, token):
        self.body, self.on_close, self.token, self.closed = body, on_close, token, False

    def __iter__(self):
        return iter(self.body)

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.on_close()
            try:
                _request_id.reset(self.token)
            except ValueError:  # closed on another thread or context than it was opened on
                _request_id.set(None)
