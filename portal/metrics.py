"""Prometheus metrics: what `/metrics` exposes, and the one place code records them.

Call sites use the functions below, never the metric objects, so a label set is spelled once.
Counters of money are whole micro-dollars (they only ever count integers; no float touches a
balance). With several serving processes, prometheus_client's multiprocess mode adds up what
each process wrote (PROMETHEUS_MULTIPROC_DIR, set by `serve` before the workers start).

Open holds are not counted here but read from the database at scrape time (`render`), so they
are right across processes and restarts and cost one indexed query per scrape.
"""
import logging
import os
import threading
from typing import Optional

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: from a few milliseconds (the echo model, a cached answer) to a long generation.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter("tollgate_requests_total", "HTTP requests answered, by route, model and status",
                   ["route", "model", "status"])
UPSTREAM_LATENCY = Histogram("tollgate_upstream_latency_seconds", "Upstream call duration, start to end",
                             ["upstream"], buckets=_LATENCY_BUCKETS)
UPSTREAM_FIRST_BYTE = Histogram("tollgate_upstream_first_byte_seconds", "Upstream time to the first byte",
                                ["upstream"], buckets=_LATENCY_BUCKETS)
OPEN_STREAMS = Gauge("tollgate_open_streams", "Streams being relayed now", multiprocess_mode="livesum")
CHARGES = Counter("tollgate_charges_micro_usd_total", "Micro-dollars charged for calls", ["model"])
TOPUPS = Counter("tollgate_topups_micro_usd_total", "Micro-dollars credited by paid top-ups")
RATE_LIMITED = Counter("tollgate_rate_limited_total", "Calls refused by a rate limit",
                       ["scope", "limit"])  # scope: key|account; limit: requests|tokens|concurrency
REDIS_FAILURES = Counter("tollgate_redis_failures_total", "Redis operations that failed (the caller failed open)",
                         ["use"])
CIRCUIT_STATE = Gauge("tollgate_circuit_state", "Upstream circuit breaker: 0 closed, 1 half-open, 2 open",
                      ["upstream"], multiprocess_mode="max")
UPSTREAM_ATTEMPTS = Counter("tollgate_upstream_attempts_total", "Upstream attempts, by upstream and result",
                            ["upstream", "result"])

CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
_ALL = (REQUESTS, UPSTREAM_LATENCY, UPSTREAM_FIRST_BYTE, OPEN_STREAMS, CHARGES, TOPUPS, RATE_LIMITED, REDIS_FAILURES,
        CIRCUIT_STATE, UPSTREAM_ATTEMPTS)

_mode_lock = threading.Lock()
_multiprocess = values.ValueClass is not values.MutexValue


def _multiprocess_dir() -> Optional[str]:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _follow_mode() -> None:
    """Switch to multiprocess values if PROMETHEUS_MULTIPROC_DIR was set after this module was imported.

    prometheus_client picks its value class when it is first imported, and `flask serve` imports
    the app (and so this module) before it sets the directory and forks its workers. The
    metrics' values are then made again, in files; nothing was recorded before the fork.
    """
    global _multiprocess
    if _multiprocess or not _multiprocess_dir():
        return
    with _mode_lock:
        if _multiprocess:
            return
        values.ValueClass = values.MultiProcessValue()
        for metric in _ALL:
            # Private, but the only way to remake values: labelled children are made on next use.
            if metric._labelnames:
                with metric._lock:
                    metric._metrics.clear()
            else:
                metric._metric_init()
        _multiprocess = True


def request_answered(route: str, model: str, status: int) -> None:
    _follow_mode()
    REQUESTS.labels(route, model or "", str(status)).inc()


def upstream_timing(upstream: str, seconds: float, first_byte_seconds: float | None = None) -> None:
    _follow_mode()
    UPSTREAM_LATENCY.labels(upstream).observe(seconds)
    if first_byte_seconds is not None:
        UPSTREAM_FIRST_BYTE.labels(upstream).observe(first_byte_seconds)


def upstream_attempt(upstream: str, result: str) -> None:
    """result: ok, connect_error, timeout, status_5xx, status_429, auth_retry, ..."""
    _follow_mode()
    UPSTREAM_ATTEMPTS.labels(upstream, result).inc()


def stream_opened() -> None:
    _follow_mode()
    OPEN_STREAMS.inc()


def stream_closed() -> None:
    _follow_mode()
    OPEN_STREAMS.dec()


def charged(model: str, micro_usd: int) -> None:
    _follow_mode()
    if micro_usd > 0:
        CHARGES.labels(model).inc(int(micro_usd))


def topped_up(micro_usd: int) -> None:
    _follow_mode()
    if micro_usd > 0:
        TOPUPS.inc(int(micro_usd))


def rate_limited(scope: str, limit: str) -> None:
    _follow_mode()
    RATE_LIMITED.labels(scope, limit).inc()


def redis_failed(use: str) -> None:
    _follow_mode()
    REDIS_FAILURES.labels(use).inc()


def circuit(upstream: str, state: str) -> None:
    _follow_mode()
    CIRCUIT_STATE.labels(upstream).set(CIRCUIT_VALUES[state])


# -- the scrape ----------------------------------------------------------------------------------


class OpenHolds:
    """A collector reading the open holds (count and micro-dollars) from the database when scraped."""

    def __init__(self, read):
        self.read = read  # () -> (count, total micro-dollars)

    def collect(self):
        try:
            count, total = self.read()
        except Exception as exc:  # the database is down: the rest of the metrics still matter most
            logging.getLogger(__name__).warning("metrics: open holds unreadable (%s)", type(exc).__name__)
            return
        yield GaugeMetricFamily("tollgate_open_holds", "Holds open now (calls in flight or never settled)",
                                value=count)
        yield GaugeMetricFamily("tollgate_open_holds_micro_usd", "Micro-dollars reserved by open holds",
                                value=total)


def open_holds() -> tuple[int, int]:
    """Open holds and their total, from the database (an app context is needed)."""
    from sqlalchemy import func, select

    from .extensions import db
    from .models import Hold, HoldStatus

    try:
        count, total = db.session.execute(select(func.count(), func.coalesce(func.sum(Hold.amount), 0))
                                          .where(Hold.status == HoldStatus.OPEN.value)).one()
    finally:
        db.session.close()  # rolls back a failed read too; the scrape holds no connection
    return int(count), int(total)


def render(read_holds=open_holds) -> bytes:
    """Every metric in Prometheus's text format: all processes' in multiprocess mode, else this one's."""
    _follow_mode()
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(OpenHolds(read_holds))
    if _multiprocess_dir():
        MultiProcessCollector(scrape)
        return generate_latest(scrape)
    return generate_latest(REGISTRY) + generate_latest(scrape)
