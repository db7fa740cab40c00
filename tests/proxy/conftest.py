"""The proxy under test: the app served by real waitress on loopback, a fake upstream behind it."""
import time

import pytest
import requests
from sqlalchemy import select

from portal import apikeys, catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import UsageRecord
from portal.pricing import Price
from tests.factories import make_user
from tests.fake_upstream import ANTHROPIC_KEY, OPENAI_KEY, FakeUpstream

GPT = Price(input=2_000_000, output=8_000_000, cache_read=500_000)
CLAUDE = Price(input=3_000_000, output=15_000_000, cache_read=300_000, cache_write_5m=3_750_000)
ECHO = Price(input=2_500_000, output=10_000_000)
CREDIT = 10_000_000  # $10


@pytest.fixture
def app_config():
    # Generous: on a busy machine a healthy fake upstream can be slow. Timeouts are tested with
    # their own short settings in test_timeouts.py, against upstreams that never answer.
    return {"UPSTREAM_CONNECT_TIMEOUT": 10.0, "UPSTREAM_FIRST_BYTE_TIMEOUT": 30.0, "UPSTREAM_IDLE_TIMEOUT": 30.0,
            "SERVE_THREADS": 24, "PROXY_MAX_INFLIGHT": 20, "MAX_CONTENT_LENGTH": 2 * 1024 * 1024}


@pytest.fixture
def catalog_ready(app, fake):
    with atomic():
        catalog.add_upstream("fake-openai", "openai", fake.url + "/v1", OPENAI_KEY, allow_private_host=True)
        catalog.add_upstream("fake-anthropic", "anthropic", fake.url, ANTHROPIC_KEY, allow_private_host=True)
        catalog.add_upstream("echo", "echo")
        catalog.set_model("gpt-test", "fake-openai", GPT, upstream_model="gpt-upstream", max_output_tokens=4096)
        catalog.set_model("claude-test", "fake-anthropic", CLAUDE, upstream_model="claude-upstream",
                          max_output_tokens=8192)
        catalog.set_model("echo-1", "echo", ECHO, max_output_tokens=1024)


@pytest.fixture
def key(app, catalog_ready):
    user = make_user("caller@example.com", credit=CREDIT)
    with atomic():
        _, plaintext = apikeys.issue(user, "tests")
    return plaintext


def balance(gateway: str, key: str) -> dict:
    return requests.get(f"{gateway}/v1/balance", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()


def records() -> list[UsageRecord]:
    db.session.rollback()
    return list(db.session.scalars(select(UsageRecord).order_by(UsageRecord.id)))


def wait_for_records(count: int, timeout: float = 10.0) -> list[UsageRecord]:
    """Usage records are written when a call ends, which for a dropped stream is after the client saw it end."""
    deadline = time.monotonic() + timeout
    while True:
        found = records()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


@pytest.fixture
def second():
    """Another fake upstream, for a model's second route (failover, circuit breakers, affinity)."""
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def backup(app, catalog_ready, second):
    """gpt-test: fake-openai first (priority 1), then fake-b (priority 2) under its own model name."""
    from portal import routes
    with atomic():
        catalog.add_upstream("fake-b", "openai", second.url + "/v1", OPENAI_KEY, allow_private_host=True)
        routes.add_route("gpt-test", "fake-b", upstream_model="gpt-b", priority=2)
    return second
