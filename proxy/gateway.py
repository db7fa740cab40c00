"""One proxied call: authenticate -> price -> hold -> forward -> settle.

Views build a `CallRequest` from the HTTP request and hand it here; nothing below reads Flask's
request. Money moves only through `portal.calls` (two short transactions per call).
"""
import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Optional, Union

from flask import Flask

from portal import apikeys, calls, catalog
from portal.errors import (AccountNotVerified, AccountSuspended, InsufficientFunds, KeyExpired, KeyRejected,
                           SpendCapReached, UnknownModel)
from portal.money import format_usd
from portal.pricing import Usage, quote

from . import metering
from .errors import ApiError
from .metering import CHAT, COUNT_TOKENS, EMBEDDINGS, MESSAGES, RESPONSES, StreamMeter, UsageRejected
from .rewrite import parse_body, rewrite
from .sse import Splitter, parse
from .upstreams import Timeouts, UpstreamUnavailable
from .upstreams.echo import EchoUpstream
from .upstreams.http import HttpUpstream, make_session

log = logging.getLogger(__name__)

ROUTE_PROTOCOL = {CHAT: "openai", RESPONSES: "openai", EMBEDDINGS: "openai", MESSAGES: "anthropic",
                  COUNT_TOKENS: "anthropic"}
ROUTE_PATH = {CHAT: "/chat/completions", RESPONSES: "/responses", EMBEDDINGS: "/embeddings",
              MESSAGES: "/messages", COUNT_TOKENS: "/messages/count_tokens"}
ROUTE_FOR_PROTOCOL = {"openai": "/v1/chat/completions, /v1/responses or /v1/embeddings",
                      "anthropic": "/v1/messages"}
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024


@dataclass(frozen=True)
class CallRequest:
    route: str
    body: bytes
    api_key: Optional[str]
    client_ip: Optional[str]
    headers: dict   # lower-case names; only the upstream allow-list is ever forwarded
    query: Optional[str]
    shape: str


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: Union[bytes, Iterable[bytes]]
    request_id: Optional[str] = None
    streamed: bool = False


class ModelCache:
    """Serving models for a few seconds, so a call costs no catalog query; price changes show within the TTL."""

    def __init__(self, ttl: float):
        self._ttl = ttl
        self._entries: dict[str, tuple[float, catalog.ServingModel]] = {}

    def get(self, public_id: str) -> catalog.ServingModel:
        now = time.monotonic()
        hit = self._entries.get(public_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        model = catalog.serving_model(public_id)
        self._entries[public_id] = (now + self._ttl, model)
        return model


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def authenticate(api_key: Optional[str], client_ip: Optional[str]) -> apikeys.Caller:
    try:
        caller = apikeys.authenticate(api_key)
    except KeyExpired as exc:  # an expiry date is a limit the key's owner set: 403 like the others
        raise ApiError(403, f"{_sentence(exc)} Set a later expiry date in the portal, or use another key.") from None
    except (AccountSuspended, AccountNotVerified) as exc:
        raise ApiError(403, _sentence(exc)) from None
    except KeyRejected as exc:
        hint = ("Send your key as 'Authorization: Bearer KEY' or 'x-api-key: KEY'." if api_key is None
                else "Check the key, or create a new one in the portal.")
        raise ApiError(401, f"{_sentence(exc)} {hint}") from None
    if not caller.may_call_from(client_ip):
        raise ApiError(403, f"This API key may not be used from {client_ip}; change the key's IP allow-list "
                            "in the portal.")
    return caller


def _redact(message: str, secret: Optional[str]) -> Optional[str]:
    """Drop a message that shows any recognisable part of the upstream credential."""
    if secret and len(secret) >= 8 and (secret in message or secret[:8] in message or secret[-8:] in message):
        return None
    return message


def upstream_error(status: int, raw: bytes, secret: Optional[str]) -> ApiError:
    """A clean error for an upstream failure: its message (credential-free) and a status class."""
    message = None
    try:
        document = json.loads(raw)
        error = document.get("error") if isinstance(document, dict) else None
        message = (error.get("message") if isinstance(error, dict)
                   else error if isinstance(error, str) else document.get("message"))
    except (ValueError, AttributeError):
        pass
    message = _redact(message, secret) if isinstance(message, str) else None
    detail = f": {message[:500]}" if message else "."
    if status in (401, 402, 403):
        return ApiError(502, "The upstream provider refused the gateway's request (its account or "
                             "credentials); nothing was charged. Please tell the operator.")
    if status == 429:
        return ApiError(429, f"The upstream provider is rate limiting; nothing was charged. Retry shortly{detail}",
                        headers={"Retry-After": "5"})
    if status in (503, 529):
        return ApiError(503, f"The upstream provider is overloaded; nothing was charged. Retry shortly{detail}")
    if 400 <= status < 500:
        return ApiError(status if status in (400, 404, 413, 422) else 400,
                        f"The upstream provider rejected the request{detail}")
    return ApiError(502, f"The upstream provider failed (HTTP {status}); nothing was charged{detail}")


class Gateway:
    def __init__(self, app: Flask):
        config = app.config
        self.app = app
        self.models = ModelCache(config["MODEL_CACHE_SECONDS"])
        self.session = make_session(config["SERVE_THREADS"])
        self.http = HttpUpstream(self.session)
        self.echo = EchoUpstream()
        self.timeouts = Timeouts(config["UPSTREAM_CONNECT_TIMEOUT"], config["UPSTREAM_FIRST_BYTE_TIMEOUT"],
                                 config["UPSTREAM_IDLE_TIMEOUT"])
        self.capacity = threading.BoundedSemaphore(config["PROXY_MAX_INFLIGHT"])

    def close(self) -> None:
        """Close pooled upstream connections (the app is going away)."""
        self.session.close()

    # -- the call ---------------------------------------------------------------------------

    def handle(self, req: CallRequest) -> Reply:
        caller = authenticate(req.api_key, req.client_ip)
        document = parse_body(req.body)
        public_id = document.get("model")
        if not isinstance(public_id, str) or not public_id:
            raise ApiError(400, "model: Field required (a model id from GET /v1/models).")
        if not caller.may_use(public_id):
            raise ApiError(403, f"This API key may not use the model '{public_id}'; change the key's allowed "
                                "models in the portal.")
        try:
            model = self.models.get(public_id)
        except UnknownModel as exc:
            raise ApiError(404, str(exc)) from None
        protocol = model.upstream.protocol
        if protocol != "echo" and protocol != ROUTE_PROTOCOL[req.route]:
            raise ApiError(400, f"The model '{public_id}' is served over the {protocol} API; "
                                f"call {ROUTE_FOR_PROTOCOL[protocol]} instead.")
        stream = document.get("stream") is True and req.route not in (EMBEDDINGS, COUNT_TOKENS)
        call_body = rewrite(req.route, req.body, document, upstream_model=model.upstream_model,
                            model_max_output=model.max_output_tokens, stream=stream)
        if req.route == COUNT_TOKENS:
            return self._count_tokens(req, model, call_body)
        worst_case = Usage(input=metering.hold_input_tokens(len(req.body)), output=call_body.max_output)
        # At least one micro-dollar, so a balance at or below zero stops every call.
        hold_amount = max(1, quote(model.price, worst_case))
        if not self.capacity.acquire(blocking=False):
            raise ApiError(503, "The gateway is at capacity; retry in a few seconds.", headers={"Retry-After": "2"})
        try:
            call = calls.open_call(calls.new_request_id(), caller, model, hold_amount, client_ip=req.client_ip,
                                   route=req.route, streamed=stream)
        except BaseException as exc:
            self.capacity.release()
            if isinstance(exc, InsufficientFunds):
                raise ApiError(402, self._insufficient(exc, model, call_body.max_output, req.route)) from None
            if isinstance(exc, SpendCapReached):
                raise ApiError(403, _sentence(exc), code="spend_cap_reached") from None
            raise
        try:
            return self._forward(call, req, model, call_body, stream)
        except ApiError as exc:
            exc.headers["X-Request-Id"] = call.request_id  # the usage record says what happened
            raise

    def _forward(self, call, req: CallRequest, model, call_body, stream: bool) -> Reply:
        started = time.monotonic()
        try:
            response = self._send(req, model, call_body, stream)
        except UpstreamUnavailable as exc:
            raise self._gone(call, started, exc, "upstream_unreachable") from None
        except BaseException as exc:
            self._finish(call, started, calls.Outcome(status="gateway_error", error=type(exc).__name__))
            raise
        answered = time.monotonic()  # the upstream's status and headers are in
        if response.status >= 300:
            raise self._fail(call, started, response, model)
        if stream:
            return Reply(response.status, response.content_type, self._relay(call, started, response, req, call_body),
                         call.request_id, streamed=True)
        return self._complete(call, started, answered, response, req)

    def _send(self, req: CallRequest, model: catalog.ServingModel, call_body, stream: bool):
        if model.upstream.protocol == "echo":
            return self.echo.send(route=req.route, body=call_body.document, stream=stream,
                                  max_output=call_body.max_output)
        return self.http.send(protocol=model.upstream.protocol, base_url=model.upstream.base_url,
                              api_key=model.upstream.api_key, path=ROUTE_PATH[req.route], query=req.query,
                              body=call_body.body, client_headers=req.headers, timeouts=self.timeouts)

    @staticmethod
    def _insufficient(exc: InsufficientFunds, model, max_output: int, route: str) -> str:
        available = format_usd(max(exc.available or 0, 0))
        if route == EMBEDDINGS:
            return (f"Insufficient balance: this call needs {format_usd(exc.needed)} available and you have "
                    f"{available}. Top up your balance in the portal.")
        field = "max_tokens" if route != RESPONSES else "max_output_tokens"
        return (f"Insufficient balance: this call needs up to {format_usd(exc.needed)} held "
                f"(the input plus {max_output} output tokens of {model.public_id}) and you have {available} "
                f"available. Top up your balance, or send a smaller {field}.")

    def _finish(self, call: calls.OpenCall, started: float, outcome: calls.Outcome, first_byte: Optional[float] = None):
        """Settle or release the hold and write the usage record, in a context of our own."""
        outcome = replace(outcome, first_byte_ms=None if first_byte is None else int((first_byte - started) * 1000),
                          duration_ms=int((time.monotonic() - started) * 1000))
        try:
            with self.app.app_context():
                return calls.close_call(call, outcome)
        except Exception:
            log.exception("could not settle call %s; its hold stays open", call.request_id)
            raise
        finally:
            self.capacity.release()

    def _gone(self, call, started, exc: UpstreamUnavailable, broken_status: str) -> ApiError:
        """Record a call whose upstream vanished before any output (nothing charged); the client's error."""
        self._finish(call, started, calls.Outcome(status="upstream_timeout" if exc.timeout else broken_status,
                                                  http_status=504 if exc.timeout else 502, error=str(exc)))
        return ApiError(504 if exc.timeout else 502, f"{exc}; nothing was charged.")

    def _fail(self, call, started, response, model) -> ApiError:
        try:
            raw = response.read(MAX_ERROR_BYTES)
        except UpstreamUnavailable:
            raw = b""
        finally:
            response.close()
        error = upstream_error(response.status, raw, model.upstream.api_key)
        log.warning("upstream %s answered %s for %s", model.upstream.name, response.status, call.request_id)
        self._finish(call, started, calls.Outcome(status="upstream_error", http_status=response.status,
                                                  error=error.message))
        return error

    def _complete(self, call, started, answered: float, response, req: CallRequest) -> Reply:
        try:
            raw = response.read(MAX_RESPONSE_BYTES)
        except UpstreamUnavailable as exc:
            raise self._gone(call, started, exc, "upstream_failed") from None
        finally:
            response.close()
        try:
            document = json.loads(raw)
        except ValueError:
            document = None
        try:
            usage = metering.usage_from_body(req.route, document)
        except UsageRejected as exc:
            log.warning("call %s: refused upstream usage %s", call.request_id, exc)
            usage = None
        estimated = usage is None
        if usage is None:
            usage = Usage(input=metering.estimated_input_tokens(len(req.body)),
                          output=metering.estimated_output_tokens(document))
        self._finish(call, started, calls.Outcome("ok", usage, estimated, response.status), answered)
        return Reply(response.status, response.content_type, raw, call.request_id)

    def _relay(self, call, started, response, req: CallRequest, call_body) -> Iterator[bytes]:
        """Pass the upstream's events on one by one, metering them; settle however it ends.

        A completed stream is settled before its last event goes out, so a client that reads
        its balance right after the stream ends already sees the charge.
        """
        meter = StreamMeter(req.route)
        splitter = Splitter()
        strip_usage = req.route == CHAT and not call_body.client_wants_usage
        status, error, first_byte, settled = "ok", None, None, False
        try:
            try:
                for chunk in response.chunks():
                    first_byte = first_byte or time.monotonic()
                    for raw in splitter.feed(chunk):
                        if self._meter(meter, raw, call) and strip_usage:
                            continue
                        if meter.finished and not settled:
                            settled = True
                            usage, estimated = meter.charge(len(req.body))
                            self._finish(call, started, calls.Outcome("ok", usage, estimated, response.status),
                                         first_byte)
                        yield raw
                rest = splitter.rest()
                if rest.strip():
                    self._meter(meter, rest, call)
                    yield rest
                if not meter.finished:
                    status, error = "upstream_truncated", "the upstream ended the stream before its last event"
                    yield ApiError(502, "The upstream provider ended the stream early; only the output "
                                        "relayed was charged.").sse_event(req.shape)
            except UpstreamUnavailable as exc:
                status, error = ("upstream_timeout" if exc.timeout else "upstream_failed"), str(exc)
                yield ApiError(504 if exc.timeout else 502, f"{exc}.").sse_event(req.shape)
        except GeneratorExit:
            status = "client_disconnected"
            raise
        finally:
            response.close()
            if not settled:
                if status not in ("ok", "client_disconnected") and not meter.relayed_output:
                    usage, estimated = None, False  # nothing reached the client: nothing is charged
                else:
                    usage, estimated = meter.charge(len(req.body))
                self._finish(call, started, calls.Outcome(status, usage, estimated, response.status, error),
                             first_byte)

    @staticmethod
    def _meter(meter: StreamMeter, raw: bytes, call) -> bool:
        try:
            return meter.feed(parse(raw))
        except UsageRejected as exc:
            log.warning("call %s: refused upstream usage %s", call.request_id, exc)
            return False

    def _count_tokens(self, req: CallRequest, model, call_body) -> Reply:
        try:
            response = self._send(req, model, call_body, stream=False)
            try:
                raw = response.read(MAX_ERROR_BYTES)
            finally:
                response.close()
        except UpstreamUnavailable as exc:
            raise ApiError(504 if exc.timeout else 502, str(exc)) from None
        if response.status >= 300:
            raise upstream_error(response.status, raw, model.upstream.api_key)
        return Reply(response.status, response.content_type, raw)
