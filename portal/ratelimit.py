"""Fixed-window counters for throttling (login failures, contact form, ...).

With REDIS_URL the counters live in Redis and are shared by every process and machine;
without it they live in this process (fine for the single-process embedded default).
"""
import threading
import time
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

    def count(self, key: str) -> int:
        expires, count = self._counts.get(key, (0.0, 0))
        return count if expires > time.monotonic() else 0

    def retry_after(self, key: str) -> int:
        expires, _ = self._counts.get(key, (0.0, 0))
        return max(0, int(expires - time.monotonic()) + 1)

    def reset(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)


class RedisCounters:
    def __init__(self, url: str, prefix: str):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix

    def hit(self, key: str, window: int) -> int:
        name = self._prefix + key
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, window, nx=True)
        return int(pipe.execute()[0])

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


def blocked(key: str, limit: int) -> Optional[int]:
    """Seconds until `key` may try again when it has used up `limit`, else None."""
    store = counters()
    return store.retry_after(key) if store.count(key) >= limit else None


def hit(key: str, window: int) -> int:
    return counters().hit(key, window)


def reset(key: str) -> None:
    counters().reset(key)
