"""One proxied call: admit -> hold -> forward -> settle.

Views build a `CallRequest` from the HTTP request and hand it here; nothing below reads Flask's
request. Money moves only through `portal.calls` (two short transactions per call, none while
the upstream works).
"""
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Optional, Union

from flask import Flask, current_app, has_app_context

from portal import calls, catalog, database, ledger, links, logs, metrics
from portal.errors import CreditsExpired, InsufficientFunds, SpendCapReached
from portal.i18n import language
from portal.money import format_usd
from portal.pricing import Usage

from . import holds, metering, rates, routing, translate
from .admission import Capacity, Limits, ModelCache, Slot, authenticate, choose_model, sentence
from .breaker import Breakers
from .errors import ApiError, _, upstream_error
from .metering import StreamMeter, UsageRejected
from .protocols import MESSAGES, ROUTES, Route
from .translate import count as local_count
from .relay import LEFT, relay
from .rewrite import Rewritten, parse_body, rewrite
from .upstreams import Timeouts, UpstreamUnavailable
from .upstreams.echo import EchoUpstream
from .upstreams.http import HttpUpstream, make_pool

log = logging.getLogger(__name__)

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
    # The server's "has the client hung up?" (waitress.client_disconnected), when it offers one.
    client_disconnected: Optional[Callable[[], bool]] = field(default=None, compare=False)


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: Union[bytes, Iterable[bytes]]
    request_id: Optional[str] = None
    streamed: bool = False
    charge: Optional[int] = None  # micro-dollars charged, for a complete response (X-Charge-Micro-USD)
    headers: Optional[dict] = None  # more response headers (the rate limits')


@dataclass(frozen=True)
class Outbound:
    """A call as one kind of upstream gets it: on which route, with what body, translated by what."""

    route: Route          # the upstream's route: its path, and how its answers are metered
    body: Rewritten       # what goes to the upstream
    translator: object = None  # proxy.translate's, when the upstream speaks another protocol than the client

    @property
    def translated(self) -> bool:
        return self.translator is not None


def _is_event_stream(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


class Gateway:
    def __init__(self, app: Flask):
        config = app.config
        self.app = app
        self.models = ModelCache(config["MODEL_CACHE_SECONDS"])
        catalog.on_change(self.models.clear)  # a model or price changed in this process: forget at once
        # Every upstream connection passes the egress check (portal/egress.py) as it is made; the
        # second pool is for upstreams the operator allowed a private host.
        self.pool = make_pool(config["SERVE_THREADS"])
        self.private_pool = make_pool(config["SERVE_THREADS"], allow_private=True)
        self.http = HttpUpstream(self.pool, self.private_pool)
        self.echo = EchoUpstream()
        self.timeouts = Timeouts(config["UPSTREAM_CONNECT_TIMEOUT"], config["UPSTREAM_FIRST_BYTE_TIMEOUT"],
                                 config["UPSTREAM_IDLE_TIMEOUT"])
        self.capacity = Capacity(Limits.from_config(config))
        # Per process (proxy/breaker.py): the console and /status show this process's view.
        self.breakers = Breakers(config["CIRCUIT_FAILURES"], config["CIRCUIT_COOLDOWN_SECONDS"])
        self.router = routing.Router(self.breakers, config["UPSTREAM_MAX_ATTEMPTS"])
        self.drain_seconds = config["DRAIN_SECONDS"]
        self.tool_calls_ceiling = config["TOOL_CALLS_CEILING"]

    def close(self) -> None:
        """Close pooled upstream connections (the app is going away)."""
        self.pool.clear()
        self.private_pool.clear()

    # -- the call ---------------------------------------------------------------------------

    def handle(self, req: CallRequest) -> Reply:
        route = ROUTES[req.route]
        caller = authenticate(req.api_key, req.client_ip)
        document = parse_body(req.body)
        model = choose_model(caller, route, document, self.models)
        logs.note_model(model.public_id)  # the request metric's model label (a catalog id, never the raw input)
        body = rewrite(route, req.body, document, upstream_model=model.upstream_model,
                       model_max_output=model.max_output_tokens, priced_tiers=model.price.service_tiers,
                       unpriced_tier=model.unpriced_tier)
        plan = self._plan(req, route, model, body) if route.billed else None
        outbounds = self._outbounds(route, model, body)  # a request the upstream cannot take: 400 now
        database.end_reads()  # nothing below needs the database until the hold: give the connection back
        quota = rates.admit(caller, req.shape)  # 429 once a per-minute limit is used up
        slot = self.capacity.take(caller)
        slot.quota = quota  # its tokens are counted when the call settles (_finish)
        if not route.billed:  # counted against the limits too: its answer carries the headers as well
            try:
                reply = self._free(req, route, model, outbounds)
            except ApiError as exc:
                exc.headers.update(rates.headers(quota, req.shape))
                raise
            finally:
                slot.release()
            return replace(reply, headers={**(reply.headers or {}), **rates.headers(quota, req.shape)})
        try:
            call = self._open(caller, req, route, model, body, plan)
        except BaseException:
            slot.release()
            raise
        try:
            reply = self._forward(call, slot, req, route, model, body, outbounds)
        except ApiError as exc:
            exc.headers["X-Request-Id"] = call.request_id  # the usage record says what happened
            exc.headers.update(rates.headers(quota, req.shape))  # an admitted call's standing, as on success
            raise
        return replace(reply, headers={**(reply.headers or {}), **rates.headers(quota, req.shape)})

    @staticmethod
    def _kind(upstream: catalog.UpstreamInfo) -> tuple:
        return upstream.protocol, upstream.chat_only, upstream.dialect

    def _outbounds(self, route: Route, model, body: Rewritten) -> dict:
        """The call as each kind of upstream among the model's routes gets it (proxy/translate/), by
        `_kind`: translated once per kind, before any money moves, so a request that cannot be
        carried to an upstream is refused with nothing held. None for a count made here."""
        outbounds: dict = {}
        for choice in model.routes:
            kind = self._kind(choice.upstream)
            if kind in outbounds:
                continue
            name = translate.upstream_route(route.name, choice.upstream.protocol, choice.upstream.chat_only)
            if name == route.name or name == translate.ESTIMATE:  # the client's own protocol: nothing to do
                outbounds[kind] = Outbound(route, body) if name == route.name else None
                continue
            call = translate.Call(model.public_id, choice.upstream.dialect, body.max_output, body.client_wants_usage)
            translator = translate.translator(route.name, choice.upstream, call)
            document = translator.request(body.document)
            sent = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            outbounds[kind] = Outbound(ROUTES[translator.upstream_route], replace(body, body=sent, document=document),
                                       translator)
        return outbounds

    def _plan(self, req: CallRequest, route: Route, model, body: Rewritten) -> holds.Plan:
        """What the call could cost (docs/billing.md, "Holds"), or a 400 for input the model may not
        take by reference."""
        plan = holds.plan(route.name, body.document, len(req.body), output_tokens=body.output_ceiling,
                          service_tier=body.service_tier, price=model.price, context_window=model.context_window,
                          tool_calls_ceiling=model.tool_calls_ceiling or self.tool_calls_ceiling)
        if plan.by_reference and model.input_by_reference == "refuse":
            raise ApiError(400, _("The model '%(model)s' takes input only in the request body, and this request "
                                  "brings more through %(by_reference)s. Send that content in the body (images and "
                                  "files inline, as base64), or use another model.", model=model.public_id,
                                  by_reference=plan.by_reference))
        return plan

    def _open(self, caller, req: CallRequest, route: Route, model, body: Rewritten,
              plan: holds.Plan) -> calls.OpenCall:
        worst_case = Usage(input=plan.input_tokens, output=plan.output_tokens, units=plan.units)
        bounds = calls.Bounds(input=plan.input_bound, output=body.output_ceiling, units=plan.units)
        try:
            return calls.open_call(calls.new_request_id(), caller, model, worst_case, bounds, tiers=plan.tiers,
                                   client_ip=req.client_ip, route=route.name, streamed=body.stream)
        except CreditsExpired as exc:
            raise ApiError(402, self._expired(exc), code="credits_expired") from None
        except InsufficientFunds as exc:
            raise ApiError(402, self._insufficient(exc, model, route, body, plan)) from None
        except SpendCapReached as exc:
            raise ApiError(403, sentence(exc), code="spend_cap_reached") from None

    @staticmethod
    def _expired(exc: CreditsExpired) -> str:
        # Said before the expiry job has run too: the ledger refuses the hold by the date alone.
        day = exc.expired_at.strftime("%Y-%m-%d")
        return _("Your credits expired on %(day)s (%(months)s months after your last top-up). Top up at "
                 "%(billing)s to use them again.", day=day, months=ledger.VALIDITY_MONTHS,
                 billing=links.public_url("billing.index"))

    @staticmethod
    def _insufficient(exc: InsufficientFunds, model, route: Route, body: Rewritten, plan: holds.Plan) -> str:
        available = format_usd(max(exc.available or 0, 0))
        billing = links.public_url("billing.index")
        if not route.output_limit_fields:
            return _("Insufficient balance: this call needs %(needed)s available and you have %(available)s. Top "
                     "up at %(billing)s to continue.", needed=format_usd(exc.needed), available=available,
                     billing=billing)
        # The details name request fields, units and tiers as the API spells them; the words around them are
        # translated, piece by piece.
        held = [_("%(count)s output tokens for each of %(choices)s choices", count=body.max_output,
                  choices=body.choices) if body.choices > 1
                else _("%(count)s output tokens", count=body.max_output)]
        held += [_("%(count)s %(unit)s uses", count=n, unit=unit) for unit, n in sorted(plan.units.items())]
        lower = [_("a smaller %(field)s or %(choices)s", field=route.limit_hint, choices=route.choices_field)
                 if body.choices > 1 else _("a smaller %(field)s", field=route.limit_hint)]
        if plan.units:
            lower.append({"messages": _("max_uses on each server tool"), "responses": "max_tool_calls"}.get(
                route.name) or _("fewer server tools"))
        where = (_(" (held at the model's %(window)s-token context window, for %(what)s)",
                   window=f"{model.context_window:,}", what=plan.by_reference) if plan.by_reference else "")
        tiers = [tier or "standard" for tier in plan.tiers]
        at = ""
        comma = "、" if language() == "zh" else ", "
        if len(tiers) > 1:
            at = _(" at the dearest of the %(tiers)s tiers", tiers=comma.join(tiers))
            lower.append(f"service_tier \"{'standard_only' if route.name == 'messages' else 'default'}\"")
        elif tiers != ["standard"]:
            at = _(" at the %(tier)s tier", tier=tiers[0])
        lower_one = lower[0] if len(lower) == 1 else _("%(first)s or %(last)s", first=comma.join(lower[:-1]),
                                                       last=lower[-1])
        held_all = held[0] if len(held) == 1 else _("%(first)s and %(second)s", second=held[-1],
                                                    first=("、" if language() == "zh" else " and ").join(held[:-1]))
        return _("Insufficient balance: this call needs up to %(needed)s held (the input%(where)s plus %(held)s of "
                 "%(model)s%(at)s) and you have %(available)s available. Top up at %(billing)s or send %(lower)s.",
                 needed=format_usd(exc.needed), where=where, held=held_all, model=model.public_id, at=at,
                 available=available, billing=billing, lower=lower_one)

    def _send(self, req: CallRequest, route: Route, upstream: catalog.UpstreamInfo, body: Rewritten,
              translated: bool = False):
        if upstream.protocol == "echo":
            return self.echo.send(route=route.name, body=body.document, stream=body.stream,
                                  max_output=body.max_output)
        # A translated call carries none of the client's protocol headers or query (Claude Code's
        # ?beta=true and anthropic-beta mean nothing to an OpenAI upstream, and the reverse).
        return self.http.send(protocol=upstream.protocol, base_url=upstream.base_url,
                              api_key=upstream.api_key, path=route.path, query=None if translated else req.query,
                              body=body.body, client_headers={} if translated else req.headers,
                              timeouts=self.timeouts, allow_private_host=upstream.allow_private_host,
                              upstream_name=upstream.name)

    def _attempted(self, attempts: list, upstream: catalog.UpstreamInfo, result: str, tried: float,
                   failed: Optional[bool], outbound: Optional[Outbound] = None) -> None:
        """Note one upstream attempt for the usage record, the metrics and the upstream's circuit; a
        translated attempt names the upstream route it was carried to (the receipt shows it)."""
        seconds = time.monotonic() - tried
        attempts.append({"upstream": upstream.name, "result": result, "ms": int(seconds * 1000)})
        if outbound is not None and outbound.translated:
            attempts[-1]["translated_to"] = "/v1" + outbound.route.path
        metrics.upstream_attempt(upstream.name, result)
        if failed:
            metrics.upstream_timing(upstream.name, seconds)
            self.breakers.failed(upstream.name)
        elif failed is not None:
            self.breakers.succeeded(upstream.name)

    def _fresh_credential(self, upstream: catalog.UpstreamInfo) -> Optional[catalog.UpstreamInfo]:
        """The upstream as the database has it now, if its credential changed since it was cached
        (rotated with `upstreams update --api-key`, maybe by another process); else None."""
        with self.app.app_context():
            fresh = catalog.upstream_info(upstream.id)
        if fresh is None or fresh.api_key == upstream.api_key or not fresh.api_key:
            return None
        self.models.clear()  # this process's next calls take the new credential too
        return fresh

    def _forward(self, call: calls.OpenCall, slot: Slot, req: CallRequest, route: Route, model,
                 body: Rewritten, outbounds: dict) -> Reply:
        """Send the call to its routes in turn (proxy/routing.py) until one answers, at most
        UPSTREAM_MAX_ATTEMPTS, failing over only before any output: on a connect failure, a
        timeout before the headers, a 5xx or a 429. One hold, one usage record listing the attempts."""
        started = time.monotonic()
        # Affinity only matters with a choice to make: a one-route model hashes and remembers nothing.
        conversation = routing.conversation(call.api_key_id, body.document) if len(model.routes) > 1 else None
        plan = self.router.plan(model, conversation)
        attempts: list = []
        for index, (choice, forced) in enumerate(plan):
            last = index == len(plan) - 1
            upstream = choice.upstream
            # The last candidate goes even when another call took its half-open probe meanwhile.
            if not self.breakers.claim(upstream.name, force=forced or last):
                continue
            outbound = outbounds[self._kind(upstream)]
            sent = routing.for_route(outbound.body, choice)
            tried = time.monotonic()
            try:
                response = self._send(req, outbound.route, upstream, sent, outbound.translated)
                if response.status in (401, 403) and upstream.protocol != "echo":
                    fresh = self._fresh_credential(upstream)
                    if fresh is not None:  # a rotated key: once more on the same upstream, with the new one
                        response.close()
                        self._attempted(attempts, upstream, "auth_retry", tried, None, outbound)
                        upstream, tried = fresh, time.monotonic()
                        response = self._send(req, outbound.route, upstream, sent, outbound.translated)
            except UpstreamUnavailable as exc:
                self._attempted(attempts, upstream, "timeout" if exc.timeout else "connect_error", tried, True,
                                outbound)
                if not last:
                    log.warning("upstream %s unreachable for %s; trying the next", upstream.name, call.request_id)
                    continue
                call = replace(call, upstream_id=upstream.id, attempts=tuple(attempts))
                raise self._gone(call, slot, started, exc, "upstream_unreachable") from None
            except BaseException as exc:
                call = replace(call, upstream_id=upstream.id, attempts=tuple(attempts))
                self._finish(call, slot, started, calls.Outcome(status="gateway_error", error=type(exc).__name__))
                raise
            retry = response.status >= 500 or response.status == 429
            self._attempted(attempts, upstream, "ok" if response.status < 300 else f"status_{response.status}",
                            tried, retry, outbound)
            if retry and not last:
                log.warning("upstream %s answered %s for %s; trying the next", upstream.name, response.status,
                            call.request_id)
                response.close()
                continue
            break
        call = replace(call, upstream_id=upstream.id, attempts=tuple(attempts))
        answered = time.monotonic()  # the upstream's status and headers are in
        if response.status >= 300:
            raise self._fail(call, slot, started, response, upstream)
        self.router.served(conversation, upstream.id)
        # Anthropic answers name the model as the client called it (translate.PublicModel says why).
        rename = (model.public_id if route.name == MESSAGES and not outbound.translated
                  and sent.document.get("model") != model.public_id else None)
        if body.stream and _is_event_stream(response.content_type):
            # Metered in the upstream's format, on the upstream's route, whatever the client called.
            meter = StreamMeter(outbound.route.name, upstream.dialect)

            def settle(status, usage, estimated, error, first_byte):
                if meter.usage_rejected and usage is not None:
                    usage, estimated = call.worst_case, True  # the stream's own figures cannot be right
                self._finish(call, slot, started, calls.Outcome(status, usage, estimated, response.status, error),
                             first_byte)

            reshape = (translate.Reshaper(outbound.translator.events(), route.name) if outbound.translated
                       else translate.PublicModel(rename) if rename else None)
            events = relay(response, meter, request_id=call.request_id, body_bytes=len(req.body),
                           strip_usage=route.stream_usage_opt_in and not body.client_wants_usage and not reshape,
                           error_shape=req.shape, settle=settle, drain_seconds=self.drain_seconds,
                           client_disconnected=req.client_disconnected, secret=upstream.api_key, reshape=reshape)
            content_type = translate.EVENT_STREAM if outbound.translated else response.content_type
            return Reply(response.status, content_type, events, call.request_id, streamed=True)
        return self._complete(call, slot, started, answered, response, req, outbound, upstream.dialect, rename)

    def _finish(self, call: calls.OpenCall, slot: Slot, started: float, outcome: calls.Outcome,
                first_byte: Optional[float] = None) -> int:
        """Settle or release the hold and write the usage record, in a context of our own; the cost."""
        outcome = replace(outcome, first_byte_ms=None if first_byte is None else int((first_byte - started) * 1000),
                          duration_ms=int((time.monotonic() - started) * 1000))
        if call.attempts:  # the upstream that served (or was tried last)
            metrics.upstream_timing(call.attempts[-1]["upstream"], outcome.duration_ms / 1000,
                                    None if first_byte is None else outcome.first_byte_ms / 1000)
        try:
            with self._context():
                cost = calls.close_call(call, outcome)
                rates.settled(slot.quota, outcome.usage, call.bounds)  # tokens per minute, as charged
                return cost
        except Exception:
            log.exception("could not settle call %s; its hold stays open", call.request_id)
            raise
        finally:
            slot.release()

    def _context(self):
        """The request's own app context when there is one (a complete answer), else a new one (a
        stream's end, after the request's context is gone): a context and a session made for
        nothing cost a call about 5% of its time."""
        if has_app_context() and current_app._get_current_object() is self.app:
            return nullcontext()
        return self.app.app_context()

    def _gone(self, call, slot, started, exc: UpstreamUnavailable, broken_status: str) -> ApiError:
        """Record a call whose upstream vanished before any output (nothing charged); the client's error."""
        self._finish(call, slot, started, calls.Outcome(status="upstream_timeout" if exc.timeout else broken_status,
                                                        http_status=504 if exc.timeout else 502, error=str(exc)))
        return ApiError(504 if exc.timeout else 502, _("%(detail)s; nothing was charged.", detail=exc))

    def _fail(self, call, slot, started, response, upstream: catalog.UpstreamInfo) -> ApiError:
        try:
            raw = response.read(MAX_ERROR_BYTES)
        except UpstreamUnavailable:
            raw = b""
        finally:
            response.close()
        error = upstream_error(response.status, raw, upstream.api_key, getattr(response, "retry_after", None))
        log.warning("upstream %s answered %s for %s", upstream.name, response.status, call.request_id)
        self._finish(call, slot, started, calls.Outcome(status="upstream_error", http_status=response.status,
                                                        error=error.message))
        return error

    def _complete(self, call, slot, started, answered: float, response, req: CallRequest, outbound: Outbound,
                  dialect: str, rename: Optional[str] = None) -> Reply:
        try:
            raw = response.read(MAX_RESPONSE_BYTES)
        except UpstreamUnavailable as exc:
            raise self._gone(call, slot, started, exc, "upstream_failed") from None
        finally:
            response.close()
        usage, estimated = self._metered(call, outbound.route, raw, response.content_type, len(req.body), dialect)
        # A client gone before the answer came (a proxy's read timeout ran out) gets nothing; the call
        # is charged by the disconnect rule (docs/billing.md): the usage the upstream reported.
        status = LEFT if req.client_disconnected is not None and req.client_disconnected() else "ok"
        cost = self._finish(call, slot, started, calls.Outcome(status, usage, estimated, response.status), answered)
        if outbound.translated:
            return self._translated(call, outbound, raw, req.shape, cost)
        if rename:
            raw = translate.with_public_model(raw, rename)
        return Reply(response.status, response.content_type, raw, call.request_id, charge=cost)

    @staticmethod
    def _translated(call: calls.OpenCall, outbound: Outbound, raw: bytes, shape: str, cost: int) -> Reply:
        """A complete answer in the client's protocol. One that cannot be read was charged like a native
        one (_metered); the client hears so, in its own error shape."""
        try:
            document = json.loads(raw)
            body = outbound.translator.response(document) if isinstance(document, dict) else None
        except (ValueError, ApiError):
            body = None
        except Exception:  # a translation bug: the client still hears what happened, in its shape
            log.exception("call %s: translating the answer failed", call.request_id)
            body = None
        if body is None:
            log.warning("call %s: a successful upstream answer that cannot be translated", call.request_id)
            error = ApiError(502, _("The upstream's answer could not be read; it was charged as the call's receipt "
                                    "shows (GET /v1/generations/%(id)s).", id=call.request_id))
            return Reply(502, "application/json", json.dumps(error.body(shape)).encode(), call.request_id, charge=cost)
        return Reply(200, "application/json", json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
                     call.request_id, charge=cost)

    @staticmethod
    def _metered(call: calls.OpenCall, route: Route, raw: bytes, content_type: str,
                 body_bytes: int, dialect: str) -> tuple[Usage, bool]:
        """What a complete successful response costs: its usage, an estimate from its text when it has
        none, or the hold's worst case when it cannot be read at all (never zero output)."""
        document = None
        if not _is_event_stream(content_type):
            try:
                document = json.loads(raw)
            except ValueError:
                pass
        if not isinstance(document, dict):
            log.warning("call %s: a successful response that cannot be metered; charged the worst case",
                        call.request_id)
            return call.worst_case, True
        try:
            usage = metering.usage_from_body(route.name, document, dialect)
        except UsageRejected as exc:
            log.warning("call %s: refused upstream usage %s; charged the worst case", call.request_id, exc)
            return call.worst_case, True
        if usage is not None:
            return usage, False
        if not isinstance(document.get(route.output_field), list):
            log.warning("call %s: a response without usage or output; charged the worst case", call.request_id)
            return call.worst_case, True
        tier = document.get("service_tier")
        return Usage(input=metering.estimated_input_tokens(body_bytes),
                     output=metering.estimated_output_tokens(document),
                     units=metering.units_from_body(route.name, document),
                     service_tier=tier if isinstance(tier, str) else None), True

    def _free(self, req: CallRequest, route: Route, model, outbounds: dict) -> Reply:
        """A call that costs nothing (count_tokens): forwarded within a capacity slot, no hold, no record.

        It fails over like a billed call (_forward): the router's plan (no affinity: counting
        fills no prompt cache), on a connect failure, a timeout, a 5xx or a 429; its attempts
        count in the metrics and the circuits. The whole answer is read before anything is sent
        back, so any attempt may still be retried."""
        plan = self.router.plan(model)
        attempts: list = []  # for _attempted's metrics and circuits; there is no usage record
        for index, (choice, forced) in enumerate(plan):
            last, upstream = index == len(plan) - 1, choice.upstream
            if not self.breakers.claim(upstream.name, force=forced or last):
                continue
            outbound = outbounds[self._kind(upstream)]
            if outbound is None:  # an upstream that cannot count: the gateway estimates (proxy/translate/count.py)
                return self._estimated_count(req)
            tried = time.monotonic()
            try:
                response = self._send(req, route, upstream, routing.for_route(outbound.body, choice))
                try:
                    raw = response.read(MAX_ERROR_BYTES)
                finally:
                    response.close()
            except UpstreamUnavailable as exc:
                self._attempted(attempts, upstream, "timeout" if exc.timeout else "connect_error", tried, True)
                if last:
                    raise ApiError(504 if exc.timeout else 502, str(exc)) from None
                continue
            retry = response.status >= 500 or response.status == 429
            self._attempted(attempts, upstream, "ok" if response.status < 300 else f"status_{response.status}",
                            tried, retry)
            if retry and not last:
                continue
            if response.status >= 300:
                raise upstream_error(response.status, raw, upstream.api_key, getattr(response, "retry_after", None))
            return Reply(response.status, response.content_type, raw)
        raise ApiError(502, _("No upstream could take the call."))  # unreachable: the last route always goes

    @staticmethod
    def _estimated_count(req: CallRequest) -> Reply:
        document = parse_body(req.body)
        body = {"input_tokens": local_count.estimate(document), "estimated": True}
        return Reply(200, "application/json", json.dumps(body).encode(), headers=dict([local_count.HEADER]))
