"""Streaming pass-through: the upstream's events go on one by one, metered as they pass.

`settle` is called exactly once, however the stream ends: completed, cut by the upstream, gone
silent, or dropped by the client. A completed stream is settled before its last event goes out,
so a client that reads its balance right after the stream ends already sees the charge.

A client that leaves does not end the call upstream: the provider finishes the generation (hidden
reasoning included) and bills it. So the gateway stops relaying but reads on, off the server's
thread, for up to `drain_seconds`, and charges what the upstream reports at the end; with no
report by then, the input (estimated, or as message_start gave it) and the output relayed
(docs/billing.md, "Disconnects").

A client that hangs up while the upstream is silent (thinking, or stuck) is not seen by a write:
there is none to make. Waitress keeps reading the connection while the request runs (serving.py)
and says so through `waitress.client_disconnected`; one watcher thread per process asks it for
every open stream every WATCH_SECONDS and calls `client_gone`, which arms the drain's deadline and
stops the upstream read then (at once with no drain), so the provider's connection is closed
promptly instead of when the upstream next speaks.
"""
import inspect
import logging
import os
import threading
import time
from collections import deque
from typing import Callable, Iterator, Optional

from portal import metrics
from portal.pricing import Usage

from .errors import ApiError, _
from .metering import StreamMeter, UsageRejected
from .redact import redact
from .sse import Splitter, parse
from .upstreams import UpstreamUnavailable

log = logging.getLogger(__name__)

# settle(status, usage or None (nothing charged), estimated, error, first byte's monotonic time)
Settle = Callable[[str, Optional[Usage], bool, Optional[str], Optional[float]], None]

LEFT = "client_disconnected"
NOT_READ = "the client left; the upstream was not read further"
WATCH_SECONDS = 0.25  # how often the watcher asks whether each open stream's client is still there


class Stream:
    """The relayed events; closing it before the first event still settles the call (the client left).

    A generator closed before it started never runs its `finally`, so the server's close() of a
    response it never began to send would leave the hold open without this.
    """

    def __init__(self, relay: "_Relay"):
        self._relay, self._events = relay, relay.events()
        self._open = True
        metrics.stream_opened()  # until the server closes the response, however the stream ended

    def __iter__(self):
        return self._events

    def close(self) -> None:
        if self._open:
            self._open = False
            metrics.stream_closed()
        if inspect.getgeneratorstate(self._events) == inspect.GEN_CREATED:
            self._relay.client_left()
        self._events.close()


def relay(response, meter: StreamMeter, *, request_id: str, body_bytes: int, strip_usage: bool,
          error_shape: str, settle: Settle, drain_seconds: float = 0,
          client_disconnected: Optional[Callable[[], bool]] = None, secret: Optional[str] = None,
          reshape=None) -> Stream:
    """`client_disconnected`: the server's way to ask whether the client hung up (waitress's), if any.
    `secret`: the upstream's credential, removed from any error event before it is relayed.
    `reshape`: a translated call's stream translation (proxy.translate.Reshaper), or a native one's
    small change (PublicModel): each upstream event is metered as the upstream sent it, then goes to
    the client as what `reshape.feed(event, raw)` makes of it."""
    return Stream(_Relay(response, meter, request_id, body_bytes, strip_usage, error_shape, settle, drain_seconds,
                         client_disconnected, secret, reshape))


def without_secret(raw: bytes, secret: Optional[str]) -> bytes:
    """An event with the upstream credential taken out, should the provider echo it in an error.

    Only events that mention an error are searched (proxy/redact.py reads every character): the
    content events of a long stream cost one substring test each. Bytes that are not UTF-8 pass
    through unchanged (surrogateescape)."""
    if not secret or b"error" not in raw:
        return raw
    return redact(raw.decode("utf-8", "surrogateescape"), secret).encode("utf-8", "surrogateescape")


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
                 error_shape: str, settle: Settle, drain_seconds: float,
                 client_disconnected: Optional[Callable[[], bool]] = None, secret: Optional[str] = None,
                 reshape=None):
        self.response, self.meter, self.request_id = response, meter, request_id
        self.reshape = reshape
        self._event = None                # the upstream event last metered (parsed once, for reshape too)
        self._untranslatable = False      # a translation failed mid-stream: the client has its error
        self._secret = secret
        self.body_bytes, self.strip_usage, self.error_shape = body_bytes, strip_usage, error_shape
        self.drain_seconds = drain_seconds
        self.client_disconnected = client_disconnected
        self._left: Optional[tuple] = None  # what had been relayed when the client left
        self._timer: Optional[threading.Timer] = None  # the drain's deadline
        self._settle = settle
        self._chunks = response.chunks()
        self._splitter = Splitter()
        self._pending: deque = deque()   # events of the current chunk not yet metered
        self._lock = threading.Lock()    # the meter and `_settled`, once two threads may touch them
        self._settled = False
        self.first_byte: Optional[float] = None

    # -- settling, exactly once ----------------------------------------------------------------

    def _feed(self, raw: bytes) -> bool:
        self._event = parse(raw)
        try:
            return self.meter.feed(self._event)
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

    def _out(self, raw: bytes) -> bytes:
        """What the client gets for the upstream event just metered: the event itself, or its translation.

        A translation that fails (an upstream stream the client's format cannot carry) ends what the
        client gets with an error event; the upstream is still read to its end and metered."""
        if self.reshape is None:
            return without_secret(raw, self._secret)
        if self._untranslatable:
            return b""
        try:
            return without_secret(self.reshape.feed(self._event, raw), self._secret)
        except ApiError as exc:
            log.warning("call %s: the stream could not be translated: %s", self.request_id, exc.message)
            self._untranslatable = True
            return exc.sse_event(self.error_shape)
        except Exception:  # a translation bug: end the client's stream with an error, meter on
            log.exception("call %s: translating the stream failed", self.request_id)
            self._untranslatable = True
            return ApiError(502, _("The upstream's stream could not be translated; the call is charged what the "
                                   "upstream reports.")).sse_event(self.error_shape)

    # -- relaying, on the server's thread --------------------------------------------------------

    def events(self) -> Iterator[bytes]:
        status, error, upstream_ended, handed_off = "ok", None, False, False
        if self.client_disconnected is not None:
            _watcher.watch(self)
        try:
            try:
                for chunk in self._chunks:
                    self.first_byte = self.first_byte or time.monotonic()
                    self._pending.extend(self._splitter.feed(chunk))
                    if self._left is not None:
                        break  # the client left while this chunk was awaited (the watcher saw it)
                    while self._pending:
                        raw = self._pending.popleft()
                        if self._feed(raw) and self.strip_usage:
                            continue
                        if self.meter.finished and self._claim():
                            usage, estimated = self.meter.charge(self.body_bytes)
                            self._finish("ok", usage, estimated, None)
                        out = self._out(raw)
                        if out:
                            yield out
                if self._left is not None:  # this thread drains, until the deadline wakes it
                    handed_off = True
                    self._drain()
                    return
                upstream_ended = True
                rest = self._splitter.rest()
                if rest.strip():
                    self._feed(rest)
                    out = self._out(rest)
                    if out:
                        yield out
                if self.reshape is not None and not self._untranslatable:
                    tail = self.reshape.finish()
                    if tail:
                        yield tail
                if not self.meter.finished:
                    status, error = "upstream_truncated", "the upstream ended the stream before its last event"
                    yield ApiError(502, _("The upstream provider ended the stream early; only the output "
                                          "relayed was charged.")).sse_event(self.error_shape)
            except UpstreamUnavailable as exc:
                if self._left is not None:  # woken by the drain's deadline (or the client left with no drain)
                    handed_off = True
                    self._drain(f"the client left; then {exc}")
                    return
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
            _watcher.forget(self)
            if not handed_off:
                self.response.close()
                if self._claim():
                    if status != "ok" and not self.meter.relayed_output:
                        usage, estimated = None, False  # nothing reached the client: nothing is charged
                    else:
                        usage, estimated = self.meter.charge(self.body_bytes)
                    self._finish(status, usage, estimated, error)

    # -- after the client left -------------------------------------------------------------------

    def _leave(self) -> Optional[tuple]:
        """Note, once, what had been relayed when the client left, and arm the drain's deadline; that
        figure, or None when the call is settled already."""
        with self._lock:
            if self._settled:
                return None
            first = self._left is None
            if first:
                self._left = (self.meter.delta_events, self.meter.delta_chars)
            relayed = self._left
        if first and self.drain_seconds > 0:
            log.info("call %s: the client left mid-stream; reading the upstream for up to %g s for its usage",
                     self.request_id, self.drain_seconds)
            self._timer = threading.Timer(self.drain_seconds, self._deadline, args=(relayed,))
            self._timer.daemon = True
            self._timer.start()
        return relayed

    def client_left(self) -> None:
        """Stop relaying; settle from what the upstream reports within `drain_seconds`, or now.

        Called on the server's thread (a write failed, or the response was closed), which hands the
        drain to a thread of its own.
        """
        relayed = self._leave()
        if relayed is None:
            self.response.close()
            return
        if self.drain_seconds <= 0:
            self.response.close()
            self._settle_left(relayed, NOT_READ)
            return
        threading.Thread(target=self._drain, daemon=True, name=f"drain {self.request_id}").start()

    def client_gone(self) -> None:
        """The server saw the client hang up while the server's thread may be blocked on the upstream:
        stop that read now with no drain, else at the drain's deadline (that thread drains meanwhile)."""
        relayed = self._leave()
        if relayed is not None and self.drain_seconds <= 0:
            self._settle_left_off_thread(relayed, NOT_READ)
            _interrupt(self.response)

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

    def _drain(self, why: str = "the client left; the upstream ended without usage") -> None:
        relayed = self._left
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
            if self._timer is not None:
                self._timer.cancel()
            self.response.close()
            self._settle_left_off_thread(relayed, why)


class _Watcher:
    """Asks the server, every WATCH_SECONDS, whether each open stream's client is still there; runs
    while streams are open, one thread per process."""

    def __init__(self):
        self._streams: set = set()
        self._lock = threading.Lock()
        self._running = False

    def watch(self, stream: _Relay) -> None:
        with self._lock:
            self._streams.add(stream)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="tollgate-disconnects", daemon=True).start()

    def forget(self, stream: _Relay) -> None:
        with self._lock:
            self._streams.discard(stream)

    def reset(self) -> None:
        """In a forked child: the parent's thread did not come along."""
        self._streams, self._lock, self._running = set(), threading.Lock(), False

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            with self._lock:
                if not self._streams:
                    self._running = False
                    return
                streams = list(self._streams)
            for stream in streams:
                try:
                    gone = stream.client_disconnected()
                except Exception:  # the server's connection object went away: its request is over
                    gone = False
                if gone:
                    self.forget(stream)
                    try:
                        stream.client_gone()
                    except Exception:
                        log.exception("call %s: stopping the upstream after the client left failed",
                                      stream.request_id)


_watcher = _Watcher()
os.register_at_fork(after_in_child=_watcher.reset)
