"""Fixed-window counters for throttling (login attempts, contact form, /v1 calls per minute, ...).

Where the counters live depends on who must share them:
- REDIS_URL set: in Redis, shared by every process and machine (one atomic step per hit).
- no Redis, several serving processes (WORKERS > 1): in the database, one atomic upsert per hit,
  so the processes of one machine still share each limit. On SQLite they live in a file of their
  own beside the database: a hit never waits for the main file's write lock, and a hit taken
  inside a write transaction (gift codes) cannot wait for itself.
- no Redis, one process: in this process. RATE_LIMIT_STORE=database keeps them in the database
  anyway (separate `serve` processes of WORKERS=1 each), =memory in each process whatever WORKERS.

A shared store that cannot be reached fails open, to this process's own counters: limits keep
working per process and nothing answers 500 because Redis is gone. It is logged (at most once a
minute), counted in metrics, tried again after a few seconds, and `redis_healthy` tells /readyz.

Count first, then compare: `hit` is one atomic increment that returns the new count, so of
any number of parallel requests exactly `limit` see a count within the limit. Reading the count
and incrementing it later (check-then-act) lets every parallel request through the check.
"""
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from flask import Flask, current_app
from sqlalchemy import text
from sqlalchemy.engine import make_url

from . import metrics, prepared
from .database import FAST, WRITE, engine_beside, writer_turn

log = logging.getLogger(__name__)


class MemoryCounters:
    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, window: int, amount: int = 1) -> int:
        now = time.monotonic()
        with self._lock:
            expires, count = self._counts.get(key, (0.0, 0))
            if expires <= now:
                expires, count = now + window, 0
            self._counts[key] = (expires, count + amount)
            if len(self._counts) > 100_000:
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
            return count + amount

    def release(self, key: str, amount: int = 1) -> None:
        """Take back `amount` of the current window (never below zero, never into a new window)."""
        with self._lock:
            expires, count = self._counts.get(key, (0.0, 0))
            if expires > time.monotonic() and count > 0:
                self._counts[key] = (expires, max(0, count - amount))

    def count(self, key: str) -> int:
        expires, count = self._counts.get(key, (0.0, 0))
        return count if expires > time.monotonic() else 0

    def retry_after(self, key: str) -> int:
        expires, _ = self._counts.get(key, (0.0, 0))
        return max(0, int(expires - time.monotonic()) + 1)

    def reset(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)


# DECRBY on a key that expired meanwhile would create it again below zero and without a TTL: a
# counter that never ends. The script decrements only a live key, never below zero, in one step.
_RELEASE = """
local count = tonumber(redis.call('get', KEYS[1]) or '0')
if count > 0 then
  return redis.call('decrby', KEYS[1], math.min(count, tonumber(ARGV[1])))
end
return 0
"""


class RedisCounters:
    def __init__(self, url: str, prefix: str):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix
        self._release = self._redis.register_script(_RELEASE)

    def hit(self, key: str, window: int, amount: int = 1) -> int:
        name = self._prefix + key
        pipe = self._redis.pipeline()  # MULTI/EXEC: the increment and its expiry land together
        pipe.incrby(name, amount)
        pipe.expire(name, window, nx=True)
        return int(pipe.execute()[0])

    def release(self, key: str, amount: int = 1) -> None:
        self._release(keys=[self._prefix + key], args=[amount])

    def count(self, key: str) -> int:
        return int(self._redis.get(self._prefix + key) or 0)

    def retry_after(self, key: str) -> int:
        return max(0, int(self._redis.ttl(self._prefix + key)))

    def reset(self, key: str) -> None:
        self._redis.delete(self._prefix + key)

    def ping(self) -> bool:
        return bool(self._redis.ping())


# One statement per hit: insert the counter, or add to it while its window lasts, or start a new
# window. Both sides of each CASE read the row as it was (Postgres and SQLite alike).
# Each a text() built once: Prepared (portal/prepared.py) keeps its compiled form.
_UPSERT = text("""
INSERT INTO rate_counter (name, expires, count) VALUES (:name, :expires, :amount)
ON CONFLICT (name) DO UPDATE SET
  count = CASE WHEN rate_counter.expires > :now THEN rate_counter.count + :amount ELSE :amount END,
  expires = CASE WHEN rate_counter.expires > :now THEN rate_counter.expires ELSE :expires END
RETURNING count
""")
_RELEASE_ROW = text("UPDATE rate_counter SET count = CASE WHEN count > :amount THEN count - :amount ELSE 0 END "
                    "WHERE name = :name AND expires > :now AND count > 0")
_COUNT = text("SELECT count, expires FROM rate_counter WHERE name = :name AND expires > :now")
_PURGE = text("DELETE FROM rate_counter WHERE expires <= :now")
_RESET = text("DELETE FROM rate_counter WHERE name = :name")
_CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS rate_counter (name VARCHAR(200) NOT NULL PRIMARY KEY, "
                 "expires BIGINT NOT NULL, count BIGINT NOT NULL)")  # the model's table, for SQLite's own file
_PURGE_EVERY = 60.0  # seconds between deletions of ended windows, per process


def _now_ms() -> int:
    return int(time.time() * 1000)


class DatabaseCounters:
    """Counters in the `rate_counter` table, each hit its own short transaction.

    They keep an engine of their own: a request thread that already holds one of the app's pooled
    connections never waits for a second from the same pool (forty parallel logins would starve
    it). A small pool, reset in a forked child, closed when the app goes away; on SQLite, in a
    file of its own beside the database (see the module docstring).
    """

    def __init__(self, engine, *, create_table: bool = False):
        self._engine, self._pid = engine, os.getpid()
        self._create_table = create_table  # SQLite's file of its own: made on first use, not at start-up
        self._lock = threading.Lock()
        self._purged = 0.0

    @classmethod
    def for_app(cls, app: Flask) -> "DatabaseCounters":
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        sqlite = sqlite_counters_url(url)
        engine = engine_beside(app, url if sqlite is None else sqlite, pool_size=2,
                               max_overflow=max(4, app.config["SERVE_THREADS"] // 4))
        return cls(engine, create_table=sqlite is not None)

    def _connect(self):
        if self._pid != os.getpid():  # a forked serving process: never use the parent's connections
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        if self._create_table:
            with self._lock:  # once, before any parallel use: a new file's WAL switch wants it alone
                if self._create_table:
                    with self._engine.connect() as conn, conn.begin():
                        conn.execute(text(_CREATE_TABLE))
                    self._create_table = False
        return self._engine.connect()

    def _run(self, statement, **params):
        # SQLite: this process's writers queue for their turn (database._WriterTurn), then BEGIN IMMEDIATE.
        with self._connect() as conn, writer_turn(self._engine):
            conn = conn.execution_options(**{WRITE: FAST})  # SQLite: BEGIN IMMEDIATE, never a lost update
            with conn.begin():
                # Straight to the driver (portal/prepared.py): a hit on every /v1 call with WORKERS > 1.
                return prepared.run(conn, statement, params).first()

    def hit(self, key: str, window: int, amount: int = 1) -> int:
        now = _now_ms()
        if time.monotonic() - self._purged > _PURGE_EVERY:
            self._purged = time.monotonic()
            self._run(_PURGE, now=now)
        return int(self._run(_UPSERT, name=key, expires=now + window * 1000, amount=amount, now=now)[0])

    def release(self, key: str, amount: int = 1) -> None:
        self._run(_RELEASE_ROW, name=key, amount=amount, now=_now_ms())

    def count(self, key: str) -> int:
        row = self._run(_COUNT, name=key, now=_now_ms())
        return int(row[0]) if row else 0

    def retry_after(self, key: str) -> int:
        now = _now_ms()
        row = self._run(_COUNT, name=key, now=now)
        return max(0, (int(row[1]) - now) // 1000 + 1) if row else 0

    def reset(self, key: str) -> None:
        self._run(_RESET, name=key)


def sqlite_counters_url(database_url: str) -> Optional[str]:
    """For a SQLite database, the file beside it that holds the counters; None for any other database."""
    parsed = make_url(database_url)
    if parsed.get_backend_name() != "sqlite":
        return None
    path = Path(parsed.database or "portal.db")
    return parsed.set(database=str(path.with_name(path.stem + "-ratelimit.db"))).render_as_string(
        hide_password=False)


class FailOpen:
    """A shared store, or this process's counters while the shared one cannot be reached."""

    RETRY_SECONDS = 5.0   # how long to stay on local counters before trying the shared store again
    LOG_SECONDS = 60.0    # at most one log line per this many seconds while it fails

    def __init__(self, shared, what: str, use: str = "ratelimit"):
        self.shared, self.local, self.what, self.use = shared, MemoryCounters(), what, use
        self.healthy: Optional[bool] = None  # None: not tried yet
        self._down_until = 0.0
        self._logged_at = -1e9
        self._missed = 0
        self._lock = threading.Lock()
        self._errors = _store_errors()

    def _failed(self, exc: BaseException) -> None:
        if self.what == "Redis":
            metrics.redis_failed(self.use)
        with self._lock:
            self.healthy = False
            now = time.monotonic()
            self._down_until = now + self.RETRY_SECONDS
            if now - self._logged_at < self.LOG_SECONDS:
                self._missed += 1
                return
            missed, self._missed, self._logged_at = self._missed, 0, now
        log.warning("rate-limit counters: %s unreachable (%s: %s); counting in this process only%s",
                    self.what, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "",
                    f" ({missed} more failure(s) since the last line)" if missed else "")

    def _call(self, name: str, *args):
        if time.monotonic() >= self._down_until:
            try:
                result = getattr(self.shared, name)(*args)
            except self._errors as exc:
                self._failed(exc)
            else:
                if self.healthy is False:
                    log.warning("rate-limit counters: %s reachable again", self.what)
                self.healthy = True
                return result
        return getattr(self.local, name)(*args)

    def hit(self, key: str, window: int, amount: int = 1) -> int:
        return self._call("hit", key, window, amount)

    def release(self, key: str, amount: int = 1) -> None:
        return self._call("release", key, amount)

    def count(self, key: str) -> int:
        return self._call("count", key)

    def retry_after(self, key: str) -> int:
        return self._call("retry_after", key)

    def reset(self, key: str) -> None:
        return self._call("reset", key)

    def check(self) -> bool:
        """Ask the shared store now (a ping); remember and return whether it answered."""
        try:
            self.shared.ping()
        except self._errors as exc:
            self._failed(exc)
            return False
        if self.healthy is False:  # else a /readyz probe would make recovery silent in the log
            log.warning("rate-limit counters: %s reachable again", self.what)
        self.healthy = True
        self._down_until = 0.0
        return True


def _store_errors() -> tuple:
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    return (RedisError, SQLAlchemyError, OSError)


def init_app(app: Flask) -> None:
    url = app.config["REDIS_URL"]
    if url:
        store = FailOpen(RedisCounters(url, app.config["REDIS_PREFIX"]), "Redis")
    elif _shared_database(app.config):
        store = FailOpen(DatabaseCounters.for_app(app), "the database")
    else:
        store = MemoryCounters()
    app.extensions["tollgate.counters"] = store
    app.extensions["tollgate.counters.shared"] = store  # tests may wrap the first; /readyz reads this one


def _shared_database(config) -> bool:
    """Whether counters without Redis belong in the database (several processes share them)."""
    store = config.get("RATE_LIMIT_STORE", "auto")
    parsed = make_url(config["SQLALCHEMY_DATABASE_URI"])
    if store == "memory" or (parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")):
        return False
    return store == "database" or config.get("WORKERS", 1) > 1


def counters():
    return current_app.extensions["tollgate.counters"]


def redis_healthy(app: Optional[Flask] = None) -> Optional[bool]:
    """Whether Redis answers now (for /readyz); None when no REDIS_URL is configured."""
    store = (app or current_app).extensions.get("tollgate.counters.shared")
    if not isinstance(store, FailOpen) or store.what != "Redis":
        return None
    return store.check()


def hit(key: str, window: int, amount: int = 1) -> int:
    return counters().hit(key, window, amount)


@dataclass(frozen=True)
class Limit:
    """At most `limit` attempts per `window` seconds for `key`."""

    key: str
    limit: int
    window: int


def hits(*limits: Limit) -> tuple[list[int], Optional[Limit]]:
    """Count one attempt under each limit in turn: (the counts, None); or, at the first limit that
    is used up, (the counts so far, that limit), with its attempt and those before it given back.

    Count first, then compare (see the module's docstring); giving refused attempts back keeps the
    counters to attempts actually made: refusals at a narrow limit (one address, one key) never
    fill a wider one (the account).
    """
    store = counters()
    counts = []
    for index, limit in enumerate(limits):
        counts.append(store.hit(limit.key, limit.window))
        if counts[-1] > limit.limit:
            for taken in limits[:index + 1]:
                store.release(taken.key)
            return counts, limit
    return counts, None


def take(*limits: Limit) -> Optional[int]:
    """Reserve one attempt under every limit, or none: seconds to wait when one is used up, else None."""
    _, refused = hits(*limits)
    return None if refused is None else max(1, counters().retry_after(refused.key))


def release(key: str) -> None:
    """Give back one attempt taken with `take` (it succeeded, so it should not count against anyone)."""
    counters().release(key)


def reset(key: str) -> None:
    counters().reset(key)
