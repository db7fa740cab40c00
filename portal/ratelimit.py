"""Fixed-window counters for throttling (login attempts, contact form, ...).

With REDIS_URL the counters live in Redis and are shared by every process and machine;
without it they live in this process (fine for the single-process embedded default).

Count first, then compare: `hit` is one atomic increment that returns the new count, so of
any number of parallel requests exactly `limit` see a count within the limit. Reading the count
and incrementing it later (check-then-act) lets every parallel request through the check.
"""
import threading
import time
from dataclasses import dataclass
from typing import Optional

from flask import Flask, current_app


class MemoryCounters:
    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, window: int) -> int:
        now = time.monotonic()
        with self._lock:
            expires, count = self._counts.get(key, (0.0, 0))
            if expires <= now:
                expires, count = now + window, 0
            self._counts[key] = (expires, count + 1)
            if len(self._counts) > 100_000:
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
            return count + 1

    def release(self, key: str) -> None:
        """Take back one hit of the current window (never below zero, never into a new window)."""
        with self._lock:
            expires, count = self._counts.get(key, (0.0, 0))
            if expires > time.monotonic() and count > 0:
                self._counts[key] = (expires, count - 1)

    def count(self, key: str) -> int:
        expires, count = self._counts.get(key, (0.0, 0))
        return count if expires > time.monotonic() else 0

    def retry_after(self, key: str) -> int:
        expires, _ = self._counts.get(key, (0.0, 0))
        return max(0, int(expires - time.monotonic()) + 1)

    def reset(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)


# DECR on a key that expired meanwhile would create it again at -1 and without a TTL: a
# counter that never ends. The script decrements only a live key, in one atomic step.
_RELEASE = """
if redis.call('exists', KEYS[1]) == 1 and tonumber(redis.call('get', KEYS[1])) > 0 then
  return redis.call('decr', KEYS[1])
end
return 0
"""


class RedisCounters:
    def __init__(self, url: str, prefix: str):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix
        self._release = self._redis.register_script(_RELEASE)

    def hit(self, key: str, window: int) -> int:
        name = self._prefix + key
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, window, nx=True)
        return int(pipe.execute()[0])

    def release(self, key: str) -> None:
        self._release(keys=[self._prefix + key])

    def count(self, key: str) -> int:
        return int(self._redis.get(self._prefix + key) or 0)

    def retry_after(self, key: str) -> int:
        return max(0, int(self._redis.ttl(self._prefix + key)))

    def reset(self, key: str) -> None:
        self._redis.delete(self._prefix + key)


def init_app(app: Flask) -> None:
    url = app.config["REDIS_URL"]
    app.extensions["tollgate.counters"] = (RedisCounters(url, app.config["REDIS_PREFIX"]) if url
                                           else MemoryCounters())


def counters():
    return current_app.extensions["tollgate.counters"]


def hit(key: str, window: int) -> int:
    return counters().hit(key, window)


@dataclass(frozen=True)
class Limit:
    """At most `limit` attempts per `window` seconds for `key`."""

    key: str
    limit: int
    window: int


def take(*limits: Limit) -> Optional[int]:
    """Reserve one attempt under every limit, or none: seconds to wait when one is used up, else None.

    A refused attempt is taken back from every counter, so the counters hold attempts that were
    actually made: refusals at a narrow limit (one address) never fill a wider one (the account).
    """
    store = counters()
    taken = []
    for limit in limits:
        taken.append(limit.key)
        if store.hit(limit.key, limit.window) > limit.limit:
            for key in taken:
                store.release(key)
            return max(1, store.retry_after(limit.key))
    return None


def release(key: str) -> None:
    """Give back one attempt taken with `take` (it succeeded, so it should not count against anyone)."""
    counters().release(key)


def reset(key: str) -> None:
    counters().reset(key)
