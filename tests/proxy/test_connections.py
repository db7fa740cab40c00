"""No call holds a database connection while its upstream works, so slow upstreams cannot starve the pool.

The pool here has one connection and no overflow: if any call kept its connection while the
upstream (held by the test) has not answered, the health check could not get one.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests


@pytest.fixture
def app_config(app_config):
    return {**app_config, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 3}}


@pytest.mark.parametrize("path, body", [
    ("/v1/messages/count_tokens", {"model": "claude-test", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/messages", {"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}),
])
def test_calls_waiting_on_the_upstream_hold_no_connection(app, gateway, fake, key, path, body):
    release = threading.Event()
    for _ in range(3):
        fake.next(before_headers=release)
    with ThreadPoolExecutor(3) as pool:
        pending = [pool.submit(requests.post, f"{gateway}{path}", json=body, headers={"x-api-key": key},
                               timeout=15) for _ in range(3)]
        try:
            while len(fake.received) < 3:  # all three are at the upstream now
                threading.Event().wait(0.01)
            ready = requests.get(f"{gateway}/readyz", timeout=10)  # its checks query the database
            assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
            assert requests.get(f"{gateway}/v1/balance", headers={"x-api-key": key}, timeout=10).status_code == 200
        finally:
            release.set()
        assert [p.result().status_code for p in pending] == [200] * 3
