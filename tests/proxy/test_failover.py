"""Failover: a call goes to the model's next route on a connect failure, a timeout before the first
byte, a 5xx or a 429, never after output began, within UPSTREAM_MAX_ATTEMPTS; one hold, one record."""
import json
import socket
import threading

import pytest
import requests

from portal import catalog, ledger, routes
from portal.database import atomic
from portal.pricing import Usage, quote
from proxy.upstreams import Timeouts
from tests.fake_upstream import OPENAI_KEY, FakeUpstream
from tests.proxy.conftest import CREDIT, GPT, balance, records, wait_for_records

CHAT_BODY = {"model": "gpt-test", "max_completion_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def third():
    server = FakeUpstream().start()
    yield server
    server.stop()


def call(gateway, key, stream=False, body=CHAT_BODY):
    body = {**body, "stream": True} if stream else body
    return requests.post(f"{gateway}/v1/chat/completions", data=json.dumps(body), stream=stream, timeout=30,
                         headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})


def upstream_id(name):
    return catalog.find_upstream(name).id


def assert_charged_once(gateway, key, record):
    assert record.cost == quote(GPT, Usage(input=11, output=7)) and record.ledger_entry_id is not None
    money = balance(gateway, key)
    assert (money["balance_micro_usd"], money["held_micro_usd"]) == (CREDIT - record.cost, 0)
    assert ledger.verify() == []


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_an_upstream_error_fails_over_to_the_next_route(gateway, fake, backup, key, status):
    fake.next(status=status)
    response = call(gateway, key)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream"
    assert len(fake.received) == 1 and len(backup.received) == 1
    assert backup.received[0].json["model"] == "gpt-b"  # the route's own model name
    [record] = wait_for_records(1)
    assert record.status == "ok" and record.upstream_id == upstream_id("fake-b")
    assert [(a["upstream"], a["result"]) for a in record.attempts] == [
        ("fake-openai", f"status_{status}"), ("fake-b", "ok")]
    assert all(isinstance(a["ms"], int) for a in record.attempts)
    assert_charged_once(gateway, key, record)


def test_a_stream_fails_over_before_its_first_event(gateway, fake, backup, key):
    fake.next(status=503)
    with call(gateway, key, stream=True) as response:
        assert response.status_code == 200
        text = response.content.decode()
    assert "Hello" in text and text.rstrip().endswith("data: [DONE]")
    [record] = wait_for_records(1)
    assert record.status == "ok" and record.upstream_id == upstream_id("fake-b")
    assert [a["result"] for a in record.attempts] == ["status_503", "ok"]
    assert_charged_once(gateway, key, record)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


def test_a_refused_connection_fails_over(gateway, fake, backup, key):
    with atomic():
        catalog.update_upstream("fake-openai", base_url=f"http://127.0.0.1:{_closed_port()}/v1")
    response = call(gateway, key)
    assert response.status_code == 200, response.text
    [record] = wait_for_records(1)
    assert [(a["upstream"], a["result"]) for a in record.attempts] == [("fake-openai", "connect_error"),
                                                                       ("fake-b", "ok")]
    assert_charged_once(gateway, key, record)


def test_a_timeout_before_the_first_byte_fails_over(app, gateway, fake, backup, key):
    # Generous for the healthy backup on a busy machine; the first upstream never answers in time.
    app.extensions["tollgate.gateway"].timeouts = Timeouts(10.0, 3.0, 30.0)
    never = threading.Event()
    fake.next(before_headers=never)
    try:
        response = call(gateway, key)
    finally:
        never.set()
    assert response.status_code == 200, response.text
    [record] = wait_for_records(1)
    assert [a["result"] for a in record.attempts] == ["timeout", "ok"]
    assert record.upstream_id == upstream_id("fake-b")
    assert_charged_once(gateway, key, record)


def test_a_client_error_does_not_fail_over(gateway, fake, backup, key):
    fake.next(status=400)
    response = call(gateway, key)
    assert response.status_code == 400
    assert backup.received == []
    [record] = wait_for_records(1)
    assert [a["result"] for a in record.attempts] == ["status_400"] and record.cost == 0


def test_no_retry_once_a_stream_has_begun(gateway, fake, backup, key):
    fake.next(drop_after_events=2)
    with call(gateway, key, stream=True) as response:
        assert response.status_code == 200
        response.content  # noqa: B018  (read to its end, broken as it is)
    [record] = wait_for_records(1)
    assert backup.received == []  # output had begun: never sent twice
    assert record.upstream_id == upstream_id("fake-openai")
    assert [a["result"] for a in record.attempts] == ["ok"]
    assert record.status != "ok"
    assert ledger.verify() == []


def test_attempts_are_bounded(app, gateway, fake, backup, third, key):
    with atomic():
        catalog.add_upstream("fake-c", "openai", third.url + "/v1", OPENAI_KEY, allow_private_host=True)
        routes.add_route("gpt-test", "fake-c", priority=3)
    app.extensions["tollgate.gateway"].router.max_attempts = 2
    for server in (fake, backup, third):
        server.next(status=503)
    response = call(gateway, key)
    assert response.status_code == 503 and "overloaded" in response.json()["error"]["message"]
    assert (len(fake.received), len(backup.received), len(third.received)) == (1, 1, 0)
    [record] = wait_for_records(1)
    assert [a["upstream"] for a in record.attempts] == ["fake-openai", "fake-b"]
    assert (record.status, record.cost, record.upstream_id) == ("upstream_error", 0, upstream_id("fake-b"))
    money = balance(gateway, key)
    assert (money["balance_micro_usd"], money["held_micro_usd"]) == (CREDIT, 0)


def test_every_route_failing_answers_the_last_error(gateway, fake, backup, key):
    fake.next(status=500)
    backup.next(status=429, error_message="slow down, says b")
    response = call(gateway, key)
    assert response.status_code == 429 and "slow down, says b" in response.json()["error"]["message"]
    [record] = wait_for_records(1)
    assert [a["result"] for a in record.attempts] == ["status_500", "status_429"]
    assert (record.status, record.http_status, record.cost) == ("upstream_error", 429, 0)


def test_a_disabled_upstream_is_skipped(gateway, fake, backup, key):
    with atomic():
        catalog.set_upstream_enabled("fake-openai", False)
    response = call(gateway, key)
    assert response.status_code == 200
    assert fake.received == [] and len(backup.received) == 1


# -- free calls (count_tokens): the same failover, no hold, no record ------------------------------

COUNT_BODY = {"model": "claude-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def claude_backup(app, catalog_ready, second):
    """claude-test: fake-anthropic first (priority 1), then fake-b-anthropic (priority 2) as claude-b."""
    from tests.fake_upstream import ANTHROPIC_KEY
    with atomic():
        catalog.add_upstream("fake-b-anthropic", "anthropic", second.url, ANTHROPIC_KEY, allow_private_host=True)
        routes.add_route("claude-test", "fake-b-anthropic", upstream_model="claude-b", priority=2)
    return second


def count(gateway, key):
    return requests.post(f"{gateway}/v1/messages/count_tokens", data=json.dumps(COUNT_BODY), timeout=30,
                         headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                                  "content-type": "application/json"})


@pytest.mark.parametrize("status", [500, 503, 429])
def test_count_tokens_fails_over_on_an_upstream_error(app, gateway, fake, claude_backup, key, status):
    fake.next(status=status)
    response = count(gateway, key)
    assert response.status_code == 200, response.text
    assert response.json() == {"input_tokens": 11}
    assert [r.path for r in fake.received] == ["/v1/messages/count_tokens"]
    assert [r.path for r in claude_backup.received] == ["/v1/messages/count_tokens"]
    assert claude_backup.received[0].json["model"] == "claude-b"  # the route's own model name
    assert records() == []  # free: no usage record
    money = balance(gateway, key)
    assert (money["balance_micro_usd"], money["held_micro_usd"]) == (CREDIT, 0)


def test_count_tokens_fails_over_on_a_refused_connection(gateway, fake, claude_backup, key):
    with atomic():
        catalog.update_upstream("fake-anthropic", base_url=f"http://127.0.0.1:{_closed_port()}")
    response = count(gateway, key)
    assert response.status_code == 200, response.text
    assert len(claude_backup.received) == 1 and records() == []


def test_count_tokens_does_not_fail_over_on_a_client_error_and_answers_the_last_error(gateway, fake, claude_backup,
                                                                                     key):
    fake.next(status=400)
    assert count(gateway, key).status_code == 400
    assert claude_backup.received == []
    fake.next(status=500)
    claude_backup.next(status=429, error_message="slow down, says b")
    response = count(gateway, key)
    assert response.status_code == 429 and "slow down, says b" in response.json()["error"]["message"]
    assert records() == []
