"""Errors in the shape each API's clients expect.

OpenAI routes: {"error": {"message", "type", "param", "code"}}.
Anthropic routes: {"type": "error", "error": {"type", "message"}}.

Messages are for people: English, or Simplified Chinese when the request's Accept-Language asks
for it (SDKs send none: English). They are translated where the error is built, with `_` below,
so a call that succeeds does no language work at all; outside a request they stay English. `type`
and `code` are for programs and never change with the language.
"""
import json
import math
from typing import Optional

from flask_babel import gettext as _  # noqa: F401 (the proxy's modules translate with errors._)
from flask_babel import lazy_gettext as _l  # noqa: F401 (words looked up only if a refusal shows them)

from portal.i18n import language

from .redact import redact


def sentences(*parts: str) -> str:
    """Sentences one after another: a space between them in English, none in Chinese."""
    return ("" if language() == "zh" else " ").join(part for part in parts if part)

OPENAI = "openai"
ANTHROPIC = "anthropic"

# status -> (OpenAI type, OpenAI code, Anthropic type)
_KINDS = {
    400: ("invalid_request_error", None, "invalid_request_error"),
    401: ("invalid_request_error", "invalid_api_key", "authentication_error"),
    402: ("insufficient_quota", "insufficient_balance", "billing_error"),
    403: ("permission_error", "permission_denied", "permission_error"),
    404: ("invalid_request_error", "model_not_found", "not_found_error"),
    405: ("invalid_request_error", "method_not_allowed", "invalid_request_error"),
    413: ("invalid_request_error", "request_too_large", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded", "rate_limit_error"),
    500: ("server_error", None, "api_error"),
    502: ("upstream_error", "bad_gateway", "api_error"),
    503: ("server_error", "overloaded", "overloaded_error"),
    504: ("upstream_error", "upstream_timeout", "timeout_error"),
}


class ApiError(Exception):
    """A refusal or failure to report to the client, with a message that says what to do."""

    def __init__(self, status: int, message: str, *, code: Optional[str] = None,
                 headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def body(self, shape: str) -> dict:
        openai_type, openai_code, anthropic_type = _KINDS.get(self.status, _KINDS[500 if self.status >= 500 else 400])
        if shape == ANTHROPIC:
            return {"type": "error", "error": {"type": anthropic_type, "message": self.message}}
        return {"error": {"message": self.message, "type": openai_type, "param": None,
                          "code": self.code or openai_code}}

    def sse_event(self, shape: str) -> bytes:
        """The same error as a final stream event, for failures after the stream has begun."""
        data = json.dumps(self.body(shape), separators=(",", ":"))
        if shape == ANTHROPIC:
            return f"event: error\ndata: {data}\n\n".encode()
        return f"data: {data}\n\n".encode()


def upstream_message(raw: bytes, secret: Optional[str]) -> Optional[str]:
    """The message of an upstream's error body, whatever its shape, with the credential scrubbed; None if none."""
    message = None
    try:
        document = json.loads(raw)
        error = document.get("error") if isinstance(document, dict) else None
        message = (error.get("message") if isinstance(error, dict)
                   else error if isinstance(error, str) else document.get("message"))
    except (ValueError, AttributeError):
        pass
    return redact(message, secret) if isinstance(message, str) else None


MAX_RETRY_AFTER_SECONDS = 3600


def retry_after(value: Optional[str]) -> Optional[str]:
    """An upstream's Retry-After as whole seconds (1 to an hour), or None when it gave none in seconds."""
    try:
        seconds = math.ceil(float(value))
    except (TypeError, ValueError, OverflowError):  # absent, an HTTP date, nan, inf
        return None
    return str(min(max(seconds, 1), MAX_RETRY_AFTER_SECONDS))


def upstream_error(status: int, raw: bytes, secret: Optional[str], upstream_retry_after: Optional[str] = None
                   ) -> ApiError:
    """A clean error for an upstream failure: its message (credential-free) and a status class.

    A 429 or 503 passes on the upstream's own Retry-After, so the SDKs wait as long as it asked."""
    message = upstream_message(raw, secret)
    wait = retry_after(upstream_retry_after)
    if status in (401, 402, 403):
        return ApiError(502, _("The upstream provider refused the gateway's request (its account or "
                               "credentials); nothing was charged. Please tell the operator."))
    # The upstream's own words stay as it wrote them, after ours.
    if status == 429:
        text = (_("The upstream provider is rate limiting; nothing was charged. Retry shortly: %(detail)s",
                  detail=message[:500]) if message else
                _("The upstream provider is rate limiting; nothing was charged. Retry shortly."))
        return ApiError(429, text, headers={"Retry-After": wait or "5"})
    if status in (503, 529):
        text = (_("The upstream provider is overloaded; nothing was charged. Retry shortly: %(detail)s",
                  detail=message[:500]) if message else
                _("The upstream provider is overloaded; nothing was charged. Retry shortly."))
        return ApiError(503, text, headers={"Retry-After": wait} if wait else None)
    if 400 <= status < 500:
        text = (_("The upstream provider rejected the request: %(detail)s", detail=message[:500]) if message
                else _("The upstream provider rejected the request."))
        return ApiError(status if status in (400, 404, 413, 422) else 400, text)
    if message:
        return ApiError(502, _("The upstream provider failed (HTTP %(status)s); nothing was charged: %(detail)s",
                               status=status, detail=message[:500]))
    return ApiError(502, _("The upstream provider failed (HTTP %(status)s); nothing was charged.", status=status))
