"""Streaming pass-through: the upstream's events go on one by one, metered as they pass.

`settle` is called exactly once, however the stream ends: completed, cut by the upstream, gone
silent, or dropped by the client. A completed stream is settled before its last event goes out,
so a client that reads its balance right after the stream ends already sees the charge.
"""
import logging
import time
from typing import Callable, Iterator, Optional

from portal.pricing import Usage

from .errors import ApiError
from .metering import StreamMeter, UsageRejected
from .sse import Splitter, parse
from .upstreams import UpstreamUnavailable

log = logging.getLogger(__name__)

# settle(status, usage or None (nothing charged), estimated, error, first byte's monotonic time)
Settle = Callable[[str, Optional[Usage], bool, Optional[str], Optional[float]], None]


def _feed(meter: StreamMeter, raw: bytes, request_id: str) -> bool:
    try:
        return meter.feed(parse(raw))
    except UsageRejected as exc:
        log.warning("call %s: refused upstream usage %s", request_id, exc)
        meter.usage_rejected = True
        return False


class Stream:
    """The relayed events; closing it before the first event still settles the call (as dropped).

    A generator closed before it started never runs its `finally`, so the server's close() of a
    response it never began to send would leave the hold open without this.
    """

    def __init__(self, events: Iterator[bytes], abandon: Callable[[], None]):
        self._events, self._abandon, self._started = events, abandon, False

    def __iter__(self):
        self._started = True
        return self._events

    def close(self) -> None:
        if not self._started:
            self._started = True
            self._abandon()
        self._events.close()


def relay(response, meter: StreamMeter, *, request_id: str, body_bytes: int, strip_usage: bool,
          error_shape: str, settle: Settle) -> Stream:
    def abandon():
        response.close()
        settle("client_disconnected", None, False, "the client left before the first event", None)

    return Stream(_events(response, meter, request_id, body_bytes, strip_usage, error_shape, settle), abandon)


def _events(response, meter: StreamMeter, request_id: str, body_bytes: int, strip_usage: bool,
            error_shape: str, settle: Settle) -> Iterator[bytes]:
    splitter = Splitter()
    status, error, first_byte, settled = "ok", None, None, False
    try:
        try:
            for chunk in response.chunks():
                first_byte = first_byte or time.monotonic()
                for raw in splitter.feed(chunk):
                    if _feed(meter, raw, request_id) and strip_usage:
                        continue
                    if meter.finished and not settled:
                        settled = True
                        usage, estimated = meter.charge(body_bytes)
                        settle("ok", usage, estimated, None, first_byte)
                    yield raw
            rest = splitter.rest()
            if rest.strip():
                _feed(meter, rest, request_id)
                yield rest
            if not meter.finished:
                status, error = "upstream_truncated", "the upstream ended the stream before its last event"
                yield ApiError(502, "The upstream provider ended the stream early; only the output "
                                    "relayed was charged.").sse_event(error_shape)
        except UpstreamUnavailable as exc:
            status, error = ("upstream_timeout" if exc.timeout else "upstream_failed"), str(exc)
            yield ApiError(504 if exc.timeout else 502, f"{exc}.").sse_event(error_shape)
    except GeneratorExit:
        status = "client_disconnected"
        raise
    finally:
        response.close()
        if not settled:
            if status not in ("ok", "client_disconnected") and not meter.relayed_output:
                usage, estimated = None, False  # nothing reached the client: nothing is charged
            else:
                usage, estimated = meter.charge(body_bytes)
            settle(status, usage, estimated, error, first_byte)
