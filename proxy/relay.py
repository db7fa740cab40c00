"""Streaming pass-through: the upstream's events go on one by one, metered as they pass.

`settle` is called exactly once, however the stream ends: completed, cut by the upstream, gone
silent, or dropped by the client. A completed stream is settled before its last event goes out,
so a client that reads its balance right after the stream ends already sees the charge.

A client that leaves does not end the call upstream: the provider finishes the generation (hidden
reasoning included) and bills it. So the gateway stops relaying but reads on, off the server's
thread, for up to `drain_seconds`, and charges what the upstream reports at the end; with no
report by then, the input (estimated, or as message_start gave it) and the output relayed
(docs/billing.md, "Disconnects").
"""
import inspect
import logging
import threading
import time
from collections import deque
from typing import Callable, Iterator, Optional

from portal.pricing import Usage

from .errors import ApiError
from .metering import StreamMeter, UsageRejected
from .sse import Splitter, parse
from .upstreams import UpstreamUnavailable

log = logging.getLogger(__name__)

# settle(status, usage or None (nothing charged), estimated, error, first byte's monotonic time)
Settle = Callable[[str, Optional[Usage], bool, Optional[str], Optional[float]], None]

LEFT = "client_disconnected"


class Stream:
    """The relayed events; closing it before the first event still settles the call (the client left).

    A generator closed before it started never runs its `finally`, so the server's close() of a
    response it never began to send would leave the hold open without this.
    """

    def __init__(self, relay: "_Relay"):
        self._relay, self._events = relay, relay.events()

    def __iter__(self):
        return self._events

    def close(self) -> None:
        if inspect.getgeneratorstate(self._events) == inspect.GEN_CREATED:
            self._relay.client_left()
        self._events.close()


def relay(response, meter: StreamMeter, *, request_id: str, body_bytes: int, strip_usage: bool,
          error_shape: str, settle: Settle, drain_seconds: float = 0) -> Stream:
    return Stream(_Relay(response, meter, request_id, body_bytes, strip_usage, error_shape, settle, drain_seconds))


def _interrupt(response) -> None:
    """End the upstream response, waking a read blocked on it in another thread.

    Closing alone does not wake such a read (the reader holds the buffer's lock until its socket
    times out); an upstream response that can shut its socket down does.
    """
    try:
        getattr(response, "shutdown", lambda: None)()
    except Exception:  # already closed or released: nothing is blocked on it
        pass
    response.close()


class _Relay:
    """One stream's state, shared by the server's thread and, once the client has left, the drain."""

    def __init__(self, response, meter: StreamMeter, request_id: str, body_bytes: int, strip_usage: bool,
                 error_shape: str, settle: Settle, drain_seconds: float):
        self.response, self.meter, self.request_id = response, meter, request_id
        self.body_bytes, self.strip_usage, self.error_shape = body_bytes, strip_usage, error_shape
        self.drain_seconds = drain_seconds
        self._settle = settle
        self._chunks = response.chunks()
        self._splitter = Splitter()
        self._pending: deque = deque()   # events of the current chunk not yet metered
        self._lock = threading.Lock()    # the meter and `_settled`, once two threads may touch them
        self._settled = False
        self.first_byte: Optional[float] = None

    # -- settling, exactly once ----------------------------------------------------------------

    def _feed(self, raw: bytes) -> bool:
        try:
            return self.meter.feed(parse(raw))
        except UsageRejected as exc:
            log.warning("call %s: refused upstream usage %s", self.request_id, exc)
            self.meter.usage_rejected = True
            return False

    def _claim(self) -> bool:
        """True for the one caller that settles the call."""
        with self._lock:
            if self._settled:
                return False
            self._settled = True
            return True

    def _finish(self, status: str, usage: Optional[Usage], estimated: bool, error: Optional[str]) -> None:
        self._settle(status, usage, estimated, error, self.first_byte)

    # -- relaying, on the server's thread --------------------------------------------------------

    def events(self) -> Iterator[bytes]:
        status, error, upstream_ended, handed_off = "ok", None, False, False
        try:
            try:
                for chunk in self._chunks:
                    self.first_byte = self.first_byte or time.monotonic()
                    self._pending.extend(self._splitter.feed(chunk))
                    while self._pending:
                        raw = self._pending.popleft()
                        if self._feed(raw) and self.strip_usage:
                            continue
                        if self.meter.finished and self._claim():
                            usage, estimated = self.meter.charge(self.body_bytes)
                            self._finish("ok", usage, estimated, None)
                        yield raw
                upstream_ended = True
                rest = self._splitter.rest()
                if rest.strip():
                    self._feed(rest)
                    yield rest
                if not self.meter.finished:
                    status, error = "upstream_truncated", "the upstream ended the stream before its last event"
                    yield ApiError(502, "The upstream provider ended the stream early; only the output "
                                        "relayed was charged.").sse_event(self.error_shape)
            except UpstreamUnavailable as exc:
                upstream_ended = True
                status, error = ("upstream_timeout" if exc.timeout else "upstream_failed"), str(exc)
                yield ApiError(504 if exc.timeout else 502, f"{exc}.").sse_event(self.error_shape)
        except GeneratorExit:
            if not upstream_ended:
                handed_off = True
                self.client_left()  # the drain settles the call (unless it already was)
                return
            raise
        finally:
            if not handed_off:
                self.response.close()
                if self._claim():
                    if status != "ok" and not self.meter.relayed_output:
                        usage, estimated = None, False  # nothing reached the client: nothing is charged
                    else:
                        usage, estimated = self.meter.charge(self.body_bytes)
                    self._finish(status, usage, estimated, error)

    # -- after the client left -------------------------------------------------------------------

    def client_left(self) -> None:
        """Stop relaying; settle from what the upstream reports within `drain_seconds`, or now."""
        with self._lock:
            if self._settled:
                self.response.close()
                return
            relayed = (self.meter.delta_events, self.meter.delta_chars)
        if self.drain_seconds <= 0:
            self.response.close()
            self._settle_left(relayed, "the client left; the upstream was not read further")
            return
        log.info("call %s: the client left mid-stream; reading the upstream for up to %g s for its usage",
                 self.request_id, self.drain_seconds)
        timer = threading.Timer(self.drain_seconds, self._deadline, args=(relayed,))
        timer.daemon = True
        thread = threading.Thread(target=self._drain, args=(relayed, timer), daemon=True,
                                  name=f"drain {self.request_id}")
        timer.start()
        thread.start()

    def _settle_left(self, relayed: tuple, why: str) -> None:
        """Settle a call whose client left: the upstream's figures if it reported them, else the
        input and the output relayed (not what was read after the client left)."""
        with self._lock:
            if self._settled:
                return
            self._settled = True
            if self.meter.usage is None:
                self.meter.delta_events, self.meter.delta_chars = relayed
            usage, estimated = self.meter.charge(self.body_bytes)
        self._finish(LEFT, usage, estimated, why if estimated else "the client left; usage read after it")

    def _settle_left_off_thread(self, relayed: tuple, why: str) -> None:
        try:
            self._settle_left(relayed, why)
        except Exception:  # the settle callback logged it; nobody else is here to tell
            log.debug("call %s: settling after the client left failed", self.request_id, exc_info=True)

    def _deadline(self, relayed: tuple) -> None:
        self._settle_left_off_thread(relayed, f"the client left; no usage within {self.drain_seconds:g} s: estimated")
        _interrupt(self.response)

    def _drain(self, relayed: tuple, timer: threading.Timer) -> None:
        why = "the client left; the upstream ended without usage"
        try:
            while True:
                while self._pending:
                    with self._lock:
                        if self._settled:
                            return
                        self._feed(self._pending.popleft())
                        if self.meter.finished:
                            return
                if self._settled:  # the deadline passed: read no more
                    return
                chunk = next(self._chunks, None)
                if chunk is None:
                    return  # the upstream ended without its last event (a cut-off event is not read)
                self.first_byte = self.first_byte or time.monotonic()
                self._pending.extend(self._splitter.feed(chunk))
        except UpstreamUnavailable as exc:
            why = f"the client left; then {exc}"
        except Exception:  # closed under us at the deadline, or a bug: settle all the same
            if not self._settled:
                log.exception("call %s: reading the upstream after the client left failed", self.request_id)
        finally:
            timer.cancel()
            self.response.close()
            self._settle_left_off_thread(relayed, why)
