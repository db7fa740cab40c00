"""Both counter stores: in-process, and Redis (shared by processes) when REDIS_URL is set."""
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from portal import ratelimit
from portal.ratelimit import Limit, MemoryCounters, RedisCounters


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


def test_parallel_hits_each_get_their_own_count(store):
    """The increment is atomic: 40 parallel hits see 1..40, so exactly `limit` are within a limit."""
    barrier = threading.Barrier(40)

    def one(_):
        barrier.wait()
        return store.hit("parallel", 60)

    with ThreadPoolExecutor(40) as pool:
        counts = list(pool.map(one, range(40)))
    assert sorted(counts) == list(range(1, 41))


def test_release_gives_back_one_hit_and_never_goes_below_zero(store):
    store.hit("k", 60), store.hit("k", 60)
    store.release("k")
    assert store.count("k") == 1
    store.release("k"), store.release("k")
    assert store.count("k") == 0
    assert store.hit("k", 60) == 1


def test_release_after_the_window_does_not_leave_a_counter_without_expiry(store):
    store.hit("short", 1)
    if isinstance(store, MemoryCounters):
        store._counts["short"] = (0.0, 1)
    else:
        store._redis.pexpire(store._prefix + "short", 1)
        time.sleep(0.01)
    store.release("short")
    assert store.count("short") == 0
    if isinstance(store, RedisCounters):
        assert not store._redis.exists(store._prefix + "short")


@pytest.fixture
def limits(store, monkeypatch):
    monkeypatch.setattr(ratelimit, "counters", lambda: store)
    return store


def test_take_refuses_beyond_the_limit_and_keeps_only_attempts_made(limits):
    narrow, wide = Limit("narrow", 2, 60), Limit("wide", 10, 60)
    assert [ratelimit.take(narrow, wide) for _ in range(2)] == [None, None]
    for _ in range(5):
        wait = ratelimit.take(narrow, wide)
        assert wait is not None and 1 <= wait <= 60
    # Refusals at the narrow limit were taken back from both counters: they fill nothing.
    assert (limits.count("narrow"), limits.count("wide")) == (2, 2)


def test_take_refused_by_a_wider_limit_takes_back_the_narrower(limits):
    narrow, wide = Limit("narrow", 5, 60), Limit("wide", 1, 60)
    assert ratelimit.take(narrow, wide) is None
    assert ratelimit.take(narrow, wide) is not None
    assert (limits.count("narrow"), limits.count("wide")) == (1, 1)


def test_parallel_takes_admit_exactly_the_limit(limits):
    barrier = threading.Barrier(40)

    def one(_):
        barrier.wait()
        return ratelimit.take(Limit("acct-ip", 5, 60), Limit("acct", 50, 60))

    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(one, range(40)))
    assert results.count(None) == 5
    assert (limits.count("acct-ip"), limits.count("acct")) == (5, 5)
