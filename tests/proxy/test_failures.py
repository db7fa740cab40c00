"""Failures and refusals: a clear error in the client's API shape, and money exactly right."""
import json

import pytest
import requests
from openai import APIError, OpenAI

from portal import apikeys, ledger, users
from portal.database import atomic
from portal.pricing import Usage, quote
from tests.factories import make_user
from tests.fake_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.proxy.conftest import CLAUDE, CREDIT, GPT, balance, records, wait_for_records

CHAT_BODY = {"model": "gpt-test", "max_completion_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES_BODY = {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def call(gateway, key, path="/v1/chat/completions", body=CHAT_BODY, stream=False, **kw):
    body = {**body, "stream": True} if stream else body
    return requests.post(f"{gateway}{path}", data=json.dumps(body), stream=stream, timeout=10,
                         headers={"Authorization": f"Bearer {key}", "content-type": "application/json"}, **kw)


def assert_openai_error(response, status, *phrases):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for phrase in phrases:
        assert phrase in error["message"], error["message"]
    return error


def assert_anthropic_error(response, status, kind, *phrases):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    for phrase in phrases:
        assert phrase in body["error"]["message"], body["error"]["message"]


def assert_nothing_charged(gateway, key, status):
    [record] = wait_for_records(1)
    assert (record.status, record.cost, record.ledger_entry_id) == (status, 0, None)
    money = balance(gateway, key)
    assert (money["balance_micro_usd"], money["held_micro_usd"]) == (CREDIT, 0)
    assert ledger.verify() == []
    return record


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_server_error_charges_nothing(gateway, fake, key, stream):
    fake.next(status=500)
    response = call(gateway, key, stream=stream)
    assert_openai_error(response, 502, "failed (HTTP 500)", "nothing was charged")
    record = assert_nothing_charged(gateway, key, "upstream_error")
    assert (record.http_status, record.request_id) == (500, response.headers["X-Request-Id"])


def test_upstream_error_body_that_echoes_the_key_is_not_passed_on(gateway, fake, key):
    fake.next(status=400, echo_key_in_error=True)
    response = call(gateway, key, "/v1/messages", MESSAGES_BODY)
    assert_anthropic_error(response, 400, "invalid_request_error",
                           "The upstream provider rejected the request: upstream says no (key [redacted])")
    assert ANTHROPIC_KEY not in response.text and ANTHROPIC_KEY[-8:] not in response.text
    assert_nothing_charged(gateway, key, "upstream_error")


@pytest.mark.parametrize("shown", [
    OPENAI_KEY[10:16],                      # a run of six from the middle
    OPENAI_KEY[3:20],
    f"...{OPENAI_KEY[-6:]}",
    OPENAI_KEY[:6].upper() + "***" + OPENAI_KEY[-7:],
    " / ".join(OPENAI_KEY[i:i + 6] for i in range(0, 30, 6)),
])
def test_no_run_of_six_characters_of_the_credential_reaches_the_client(gateway, fake, key, shown):
    fake.next(status=400, error_message=f"Incorrect API key provided: {shown}. Check it.")
    response = call(gateway, key)
    message = assert_openai_error(response, 400, "Incorrect API key provided")["message"]
    lowered = message.split("rejected the request: ")[1].lower()
    assert not any(OPENAI_KEY[i:i + 6].lower() in lowered for i in range(len(OPENAI_KEY) - 5)), message
    [record] = wait_for_records(1)
    assert not any(OPENAI_KEY[i:i + 6] in (record.error or "") for i in range(len(OPENAI_KEY) - 5))


def test_upstream_client_error_message_is_relayed(gateway, fake, key):
    fake.next(status=400)
    assert_openai_error(call(gateway, key), 400, "rejected the request: upstream says no")


@pytest.mark.parametrize("upstream_status, status", [(401, 502), (403, 502), (429, 429), (529, 503), (503, 503)])
def test_upstream_status_classes(gateway, fake, key, upstream_status, status):
    fake.next(status=upstream_status, echo_key_in_error=True)
    response = call(gateway, key)
    assert_openai_error(response, status, "nothing was charged")
    assert OPENAI_KEY not in response.text
    assert_nothing_charged(gateway, key, "upstream_error")


def test_connection_dropped_before_headers(gateway, fake, key):
    fake.next(drop_before_headers=True)
    assert_openai_error(call(gateway, key), 502, "nothing was charged")
    assert_nothing_charged(gateway, key, "upstream_unreachable")


def test_upstream_unreachable(app, gateway, key):
    from portal import catalog
    with atomic():
        catalog.add_upstream("dead", "openai", "http://127.0.0.1:9/v1", allow_private_host=True)
        catalog.set_model("dead-model", "dead", GPT)
    response = call(gateway, key, body={**CHAT_BODY, "model": "dead-model"})
    assert_openai_error(response, 502, "could not reach the upstream", "nothing was charged")
    assert_nothing_charged(gateway, key, "upstream_unreachable")


def test_stream_dropped_after_output_charges_what_was_relayed(gateway, fake, key):
    fake.next(drop_after_events=3)  # role chunk, "Hello", " from"
    with OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0) as client:
        stream = client.chat.completions.create(**CHAT_BODY, stream=True)
        received = []
        with pytest.raises(APIError, match="connection broke mid-response"):
            for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello from"
    [record] = wait_for_records(1)
    body_bytes = len(json.dumps({**CHAT_BODY, "stream": True}, separators=(",", ":")))
    # Input at four bytes a token (the usage never came); output "Hello from": 10 characters, 2 deltas -> 3.
    assert (record.status, record.usage_estimated, record.output_tokens) == ("upstream_failed", True, 3)
    assert abs(record.input_tokens - -(-body_bytes // 4)) <= 5  # the SDK's JSON spacing may differ slightly
    assert record.cost == quote(GPT, Usage(input=record.input_tokens, output=3))
    assert balance(gateway, key)["balance_micro_usd"] == CREDIT - record.cost
    assert ledger.verify() == []


def test_stream_dropped_before_any_output_charges_nothing(gateway, fake, key):
    fake.next(drop_after_events=1)
    response = call(gateway, key, stream=True)
    assert b"connection broke mid-response" in response.content
    assert_nothing_charged(gateway, key, "upstream_failed")


@pytest.mark.parametrize("stream", [False, True])
def test_missing_usage_is_estimated_and_marked(gateway, fake, key, stream):
    fake.next(omit_usage=True, text="one two three four five six seven eight")
    response = call(gateway, key, "/v1/messages", MESSAGES_BODY, stream=stream)
    assert response.status_code == 200
    response.content
    [record] = wait_for_records(1)
    assert (record.status, record.usage_estimated) == ("ok", True)
    # 39 characters of text -> 10 tokens; input from the request size.
    assert record.output_tokens == 10
    assert record.input_tokens > 0 and record.cost == quote(CLAUDE, Usage(input=record.input_tokens, output=10))


def test_absurd_usage_is_refused_not_credited(gateway, fake, key):
    fake.next(input=-5000, output=3)
    assert call(gateway, key).status_code == 200
    [record] = records()
    assert record.usage_estimated and record.input_tokens > 0 and record.cost > 0
    assert balance(gateway, key)["balance_micro_usd"] == CREDIT - record.cost


def test_client_disconnect_mid_stream(app, gateway, fake, key):
    # Draining off (DRAIN_SECONDS=0): what a client that leaves pays without the upstream's figures.
    # Draining itself is tested in test_drain.py.
    app.extensions["tollgate.gateway"].drain_seconds = 0
    fake.next(delay=0.2, text=" ".join(f"w{i}" for i in range(40)), input=100, cache_read=50)
    response = call(gateway, key, "/v1/messages", MESSAGES_BODY, stream=True)
    lines = response.iter_lines()
    while b"content_block_delta" not in next(lines):
        pass
    response.close()
    [record] = wait_for_records(1)
    assert (record.status, record.usage_estimated) == ("client_disconnected", True)
    assert (record.input_tokens, record.cache_read_tokens) == (100, 50)
    assert 1 <= record.output_tokens < 40
    assert record.cost == quote(CLAUDE, Usage(input=100, cache_read=50, output=record.output_tokens))
    assert ledger.verify() == []
    assert balance(gateway, key)["held_micro_usd"] == 0


def test_insufficient_balance_is_402_and_changes_nothing(app, gateway, key):
    poor = make_user("poor@example.com", credit=100)
    with atomic():
        _, poor_key = apikeys.issue(poor, "k")
    response = call(gateway, poor_key, "/v1/messages", {**MESSAGES_BODY, "max_tokens": 4000})
    assert_anthropic_error(response, 402, "billing_error", "Insufficient balance", "smaller max_tokens", "$0.0001")
    response = call(gateway, poor_key)
    assert_openai_error(response, 402, "Insufficient balance")
    assert response.json()["error"]["code"] == "insufficient_balance"
    assert records() == []
    assert balance(gateway, poor_key)["balance_micro_usd"] == 100


def test_cost_above_the_hold_is_charged_and_blocks_the_next_call(app, catalog_ready, gateway, fake):
    user = make_user("edge@example.com", credit=1_000)
    with atomic():
        _, edge_key = apikeys.issue(user, "k")
    # More input than the hold's estimate (bytes / 2), but within what the body allows (bytes + 4,096).
    fake.next(input=2_000, output=10)
    body = {**CHAT_BODY, "max_completion_tokens": 10}
    assert call(gateway, edge_key, body=body).status_code == 200
    [record] = records()
    assert record.cost == quote(GPT, Usage(input=2_000, output=10)) == 4_080 > record.hold_amount
    assert not record.usage_clamped
    assert balance(gateway, edge_key)["balance_micro_usd"] == 1_000 - 4_080
    assert_openai_error(call(gateway, edge_key, body=body), 402, "Insufficient balance")
    assert ledger.verify() == []


@pytest.mark.parametrize("headers, status, phrase", [
    ({}, 401, "Send your key as 'Authorization: Bearer KEY'"),
    ({"Authorization": "Bearer sk-not-ours"}, 401, "Missing or malformed API key"),
    ({"Authorization": "Bearer tg_unknownkeyunknownkeyunknownkey12345678"}, 401, "Unknown API key"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "Send your key as"),
])
def test_bad_keys(gateway, key, headers, status, phrase):
    response = requests.post(f"{gateway}/v1/chat/completions", json=CHAT_BODY, headers=headers, timeout=10)
    assert_openai_error(response, status, phrase)


def test_revoked_suspended_and_unverified(app, gateway, key):
    from sqlalchemy import select
    from portal.extensions import db
    from portal.models import ApiKey
    with atomic():
        apikeys.revoke(db.session.scalar(select(ApiKey)))
    assert_openai_error(call(gateway, key), 401, "revoked")
    user = make_user("later@example.com", credit=1_000)
    with atomic():
        _, other = apikeys.issue(user, "k")
    with atomic():
        users.suspend(users.find_user("later@example.com"), "abuse")
    assert_anthropic_error(call(gateway, other, "/v1/messages", MESSAGES_BODY), 403, "permission_error",
                           "This account is suspended")
    with atomic():
        found = users.find_user("later@example.com")
        users.unsuspend(found)
        found.is_verified = False
    assert_openai_error(call(gateway, other), 403, "Verify your email")


@pytest.mark.parametrize("path, raw, status, phrase", [
    ("/v1/chat/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/chat/completions", b"[1, 2]", 400, "must be a JSON object"),
    ("/v1/chat/completions", b'{"messages": []}', 400, "model: Field required"),
    ("/v1/chat/completions", b'{"model": "nope", "messages": []}', 404, "'nope' does not exist"),
    ("/v1/chat/completions", b'{"model": "gpt-test", "max_tokens": -1}', 400, "max_tokens must be a positive whole number"),
    ("/v1/chat/completions", b'{"model": "gpt-test", "max_tokens": 1.5}', 400, "max_tokens must be a positive whole number"),
    # Translated routes (proxy/translate/) check what they carry before anything is held.
    ("/v1/embeddings", b'{"model": "claude-test", "input": "x"}', 400,
     "call /v1/chat/completions, /v1/responses, /v1/messages instead"),
    ("/v1/chat/completions", b'{"model": "claude-test", "messages": {"role": "user"}}', 400,
     "messages must be a list, got an object"),
    ("/v1/messages", b'{"model": "gpt-test", "max_tokens": 5}', 400, "messages must be a list, got null"),
    ("/v1/responses", b'{"model": "claude-test", "input": "hi", "previous_response_id": "resp_1"}', 400,
     "previous_response_id is not supported for this model"),
    ("/v1/messages", b'{"model": "claude-test", "messages": []}', 400, "max_tokens: Field required"),
    ("/v1/chat/completions", b'{"model": "gpt-test", "stream": true, "stream_options": 3}', 400, "stream_options"),
])
@pytest.mark.one_backend  # input checks no database can change
def test_malformed_requests(gateway, key, path, raw, status, phrase):
    response = requests.post(f"{gateway}{path}", data=raw, timeout=10,
                             headers={"x-api-key": key, "content-type": "application/json"})
    assert response.status_code == status, response.text
    body = response.json()
    message = body["error"]["message"]
    assert phrase in message, message
    assert (body.get("type") == "error") == path.startswith("/v1/messages")
    assert records() == []


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_body_over_the_limit_is_413(gateway, key, path):
    response = requests.post(f"{gateway}{path}", data=b"x" * (5 * 1024 * 1024 // 2), timeout=10,
                             headers={"x-api-key": key, "content-type": "application/json"})
    assert response.status_code == 413
    body = response.json()
    message = body["error"]["message"]
    assert "larger than this gateway accepts" in message
    assert (body["error"]["type"] == "request_too_large") == (path == "/v1/messages")


def test_unknown_route_and_method_are_json(gateway, key):
    response = requests.get(f"{gateway}/v1/chat/completions", headers={"x-api-key": key}, timeout=10)
    assert_openai_error(response, 405, "GET is not allowed")
    response = requests.post(f"{gateway}/v1/completions", headers={"x-api-key": key}, timeout=10)
    assert_openai_error(response, 404, "Unknown API route /v1/completions")
