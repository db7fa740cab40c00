"""Capacity: calls beyond a process's, an account's or a key's slots are refused at once, not queued.

Streams are held open by gates the fake upstream waits on, so how many calls are in flight is
decided by the test, never by timing.
"""
import threading
from contextlib import contextmanager

import pytest
import requests

from portal import apikeys, ledger, users
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey
from tests.factories import make_user
from tests.proxy.conftest import CREDIT, wait_for_records

BODY = {"model": "claude-test", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
COUNT_BODY = {"model": "claude-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "PROXY_MAX_INFLIGHT": 8}  # so 2 per account by default


def new_key(email: str) -> str:
    user = make_user(email, credit=CREDIT)
    with atomic():
        return apikeys.issue(user, "k")[1]


@contextmanager
def open_streams(gateway, fake, keys):
    """One held-open stream per entry of `keys`; all are released and read to the end afterwards."""
    gates = [fake.next(gate=threading.Event()).gate for _ in keys]
    client = requests.Session()
    client.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=len(keys) + 4))
    streams = [client.post(f"{gateway}/v1/messages", json=BODY, headers={"x-api-key": k}, stream=True, timeout=60)
               for k in keys]
    try:
        assert [s.status_code for s in streams] == [200] * len(keys)
        yield
    finally:
        for gate in gates:
            gate.set()
        for s in streams:
            s.content
        client.close()


def post(gateway, key, body=BODY, path="/v1/messages"):
    return requests.post(f"{gateway}{path}", json=body, headers={"x-api-key": key}, timeout=60)


def assert_refused(response, status, kind, *phrases):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    for phrase in phrases:
        assert phrase in body["error"]["message"]


def test_default_limits_leave_room_for_everyone(app):
    limits = app.extensions["tollgate.gateway"].capacity.limits
    assert (limits.total, limits.per_account, limits.per_key) == (8, 2, 2)


def test_one_account_cannot_take_the_process(app, gateway, fake, key):
    other = new_key("other@example.com")
    with open_streams(gateway, fake, [key, key]):
        refused = post(gateway, key)
        assert_refused(refused, 429, "rate_limit_error", "Your account already has 2 calls in progress")
        assert refused.headers["Retry-After"] == "1"
        # A second key of the same account shares the account's slots.
        with atomic():
            second = apikeys.issue(users.find_user("caller@example.com"), "second")[1]
        assert_refused(post(gateway, second), 429, "rate_limit_error", "Your account")
        # Everyone else is served.
        assert post(gateway, other, {**BODY, "stream": False}).status_code == 200
    assert len(wait_for_records(3)) == 3
    assert post(gateway, key, {**BODY, "stream": False}).status_code == 200  # slots came back


def test_refusals_are_in_the_openai_shape_on_openai_routes(app, gateway, fake, key):
    with open_streams(gateway, fake, [key, key]):
        refused = requests.post(f"{gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                json={"model": "gpt-test", "messages": []}, timeout=60)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "concurrency_limit_exceeded")


def test_a_key_limit_set_by_its_owner(app, gateway, fake, key):
    with atomic():
        apikeys.set_limits(db.session.scalar(db.select(ApiKey)), apikeys.Limits(max_concurrency=1))
    with open_streams(gateway, fake, [key]):
        assert_refused(post(gateway, key), 429, "rate_limit_error", "This API key already has 1 calls in progress", "raised in the portal")
    assert post(gateway, key, {**BODY, "stream": False}).status_code == 200


def test_a_key_limit_cannot_raise_the_operators(app, gateway, fake, key):
    with atomic():
        apikeys.set_limits(db.session.scalar(db.select(ApiKey)), apikeys.Limits(max_concurrency=50))
    with open_streams(gateway, fake, [key, key]):
        assert_refused(post(gateway, key), 429, "rate_limit_error", "Your account already has 2 calls in progress")


def test_the_process_limit_answers_503(app, catalog_ready, gateway, fake):
    keys = [new_key(f"user{i}@example.com") for i in range(5)]
    with open_streams(gateway, fake, [k for k in keys[:4] for _ in range(2)]):  # 8 of 8 slots
        assert_refused(post(gateway, keys[4]), 503, "overloaded_error", "at capacity")
    assert len(wait_for_records(8)) == 8
    assert post(gateway, keys[4], {**BODY, "stream": False}).status_code == 200
    assert ledger.verify() == []


def test_count_tokens_takes_a_slot_and_no_connection(app, gateway, fake, key):
    with open_streams(gateway, fake, [key, key]):
        assert_refused(post(gateway, key, COUNT_BODY, "/v1/messages/count_tokens"), 429, "rate_limit_error")
    assert post(gateway, key, COUNT_BODY, "/v1/messages/count_tokens").json() == {"input_tokens": 11}


def test_refused_calls_reach_nothing(app, gateway, fake, key):
    with open_streams(gateway, fake, [key, key]):
        before = len(fake.received)
        assert post(gateway, key).status_code == 429
        assert len(fake.received) == before
    records = wait_for_records(2)
    assert len(records) == 2  # the refused call holds nothing and leaves no record
    assert ledger.verify() == []
