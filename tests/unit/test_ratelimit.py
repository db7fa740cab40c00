"""Both counter stores: in-process, and Redis (shared by processes) when REDIS_URL is set."""
import os
import time
import uuid

import pytest
import redis

from portal.ratelimit import MemoryCounters, RedisCounters


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        yield MemoryCounters()
        return
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set")
    prefix = f"tollgate-test:{uuid.uuid4().hex}:"
    yield RedisCounters(url, prefix)
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_counts_within_a_window_and_resets(store):
    assert store.count("k") == 0
    assert [store.hit("k", 60) for _ in range(3)] == [1, 2, 3]
    assert store.count("k") == 3 and 0 < store.retry_after("k") <= 60
    assert store.count("other") == 0
    store.reset("k")
    assert store.count("k") == 0


def test_window_expiry_starts_a_new_count(store):
    store.hit("short", 1)
    if isinstance(store, MemoryCounters):
        store._counts["short"] = (0.0, 1)  # the window has passed
    else:
        store._redis.pexpire(store._prefix + "short", 1)
        time.sleep(0.01)
    assert store.count("short") == 0
    assert store.hit("short", 60) == 1
