"""Prometheus metrics: what `/metrics` exposes, and the one place code records them.

Call sites use the functions below, never the metric objects, so a label set is spelled once.
Counters of money are whole micro-dollars (they only ever count integers; no float touches a
balance). With several serving processes, prometheus_client's multiprocess mode adds up what
each process wrote (PROMETHEUS_MULTIPROC_DIR, set by `serve` before the workers start).
"""
from prometheus_client import Counter, Gauge, Histogram

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


def request_answered(route: str, model: str, status: int) -> None:
    REQUESTS.labels(route, model or "", str(status)).inc()


def upstream_timing(upstream: str, seconds: float, first_byte_seconds: float | None = None) -> None:
    UPSTREAM_LATENCY.labels(upstream).observe(seconds)
    if first_byte_seconds is not None:
        UPSTREAM_FIRST_BYTE.labels(upstream).observe(first_byte_seconds)


def upstream_attempt(upstream: str, result: str) -> None:
    """result: ok, connect_error, timeout, status_5xx, status_429, auth_retry, ..."""
    UPSTREAM_ATTEMPTS.labels(upstream, result).inc()


def stream_opened() -> None:
    OPEN_STREAMS.inc()


def stream_closed() -> None:
    OPEN_STREAMS.dec()


def charged(model: str, micro_usd: int) -> None:
    if micro_usd > 0:
        CHARGES.labels(model).inc(int(micro_usd))


def topped_up(micro_usd: int) -> None:
    if micro_usd > 0:
        TOPUPS.inc(int(micro_usd))


def rate_limited(scope: str, limit: str) -> None:
    RATE_LIMITED.labels(scope, limit).inc()


def redis_failed(use: str) -> None:
    REDIS_FAILURES.labels(use).inc()


def circuit(upstream: str, state: str) -> None:
    CIRCUIT_STATE.labels(upstream).set(CIRCUIT_VALUES[state])
