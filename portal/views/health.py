"""Health for load balancers and orchestrators: /healthz (alive), /readyz (able to serve); /metrics.

/healthz touches nothing: a process that answers it is alive, and restarting it would not fix a
database outage. /readyz says whether this process can serve calls now: the database answers,
its schema is at the migrations' head, and Redis answers when REDIS_URL is set. Its checks are
cached for READY_CACHE_SECONDS so a probe every second costs one query every few seconds.
Failures name the part, never a URL or an error text that could carry a password.

/metrics is Prometheus's text format (portal/metrics.py). With METRICS_TOKEN set it wants
`Authorization: Bearer <token>`; without, it answers loopback peers only (the address waitress
saw, after its trusted-proxy handling), so it is never public by accident.

All three answer during maintenance, without a session or consent redirect (see require_consent).
"""
import hmac
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text

from .. import ROOT, metrics
from ..extensions import db

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)

READY_CACHE_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 1.0


@bp.get("/healthz")
def healthz():
    """200 while the process answers: no database, no Redis (that is /readyz)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """200 with each check "ok", or 503 naming the checks that failed."""
    report = _cache().get(current_app)
    body = {"status": "ok" if report.ready else "unavailable", "checks": report.checks}
    response = jsonify(body)
    response.status_code = 200 if report.ready else 503
    response.headers["Cache-Control"] = "no-store"
    if not report.ready:
        response.headers["Retry-After"] = str(int(READY_CACHE_SECONDS))
    return response


@bp.get("/metrics")
def metrics_page():
    """Prometheus metrics, for a scraper with the token or on this machine."""
    refusal = _metrics_refusal(current_app.config.get("METRICS_TOKEN") or "", request.headers.get("Authorization", ""),
                               request.remote_addr)
    if refusal is not None:
        return refusal
    response = Response(metrics.render(), content_type=metrics.CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def _metrics_refusal(token: str, authorization: str, peer: str | None):
    if token:
        scheme, _, given = authorization.partition(" ")
        # Constant time, so the token cannot be guessed a byte at a time from response times.
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        response = jsonify(error="a valid metrics token is required (Authorization: Bearer ...)")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        address = ipaddress.ip_address(peer or "")
        if getattr(address, "ipv4_mapped", None):  # ::ffff:127.0.0.1 from a dual-stack socket
            address = address.ipv4_mapped
        if address.is_loopback:
            return None
    except ValueError:
        pass
    response = jsonify(error="metrics are served to this machine only; set METRICS_TOKEN to scrape from elsewhere")
    response.status_code = 403
    return response


@dataclass(frozen=True)
class Readiness:
    checks: dict = field(default_factory=dict)  # name -> "ok" | a short reason without secrets

    @property
    def ready(self) -> bool:
        return all(value == "ok" for value in self.checks.values())


def check(app) -> Readiness:
    """Run every readiness check now (inside an app context)."""
    checks = {"database": "ok", "migrations": "ok"}
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = _database_revisions(connection)
    except Exception as exc:  # any driver error: the message may hold the URL, so log the type only
        log.warning("readyz: database unreachable (%s)", type(exc).__name__)
        checks["database"] = "unreachable"
        checks["migrations"] = "unknown"
    else:
        heads = head_revisions()
        if current != heads:
            checks["migrations"] = "not at head"
            log.warning("readyz: database at %s, migrations at %s", sorted(current) or "nothing", sorted(heads))
    if app.config.get("REDIS_URL"):
        checks["redis"] = "ok" if _redis_answers(app) else "unreachable"
    return Readiness(checks)


@lru_cache(maxsize=1)
def head_revisions() -> frozenset:
    """The migrations' head revision(s), read once per process from migrations/versions."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory(str(ROOT / "migrations")).get_heads())


def _database_revisions(connection) -> frozenset:
    try:
        return frozenset(row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version")))
    except Exception:  # no alembic_version table: never migrated
        return frozenset()


def _redis_answers(app) -> bool:
    from .. import ratelimit

    try:
        answered = ratelimit.redis_healthy(app)  # the rate limiter's own Redis, as its calls see it
        if answered is not None:
            return answered
        return bool(_redis_client(app.config["REDIS_URL"]).ping())  # it keeps its counters elsewhere
    except Exception as exc:  # redis errors can quote the URL: log the type only
        log.warning("readyz: redis unreachable (%s)", type(exc).__name__)
        return False


@lru_cache(maxsize=4)
def _redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                socket_connect_timeout=REDIS_TIMEOUT_SECONDS)


class _ReadyCache:
    """The last readiness report per app, reused for READY_CACHE_SECONDS."""

    def __init__(self):
        self._lock = threading.Lock()
        self._report: Readiness | None = None
        self._at = 0.0

    def get(self, app) -> Readiness:
        with self._lock:
            if self._report is None or time.monotonic() - self._at >= READY_CACHE_SECONDS:
                self._report, self._at = check(app), time.monotonic()
            return self._report


def _cache() -> _ReadyCache:
    return current_app.extensions.setdefault("tollgate.readiness", _ReadyCache())
