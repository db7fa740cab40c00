"""Charges that cannot be dodged or run away (docs/billing.md, "Bounds").

A successful call is never charged less than what it produced, and never more than what its
request could cost, whatever the client sends and whatever the upstream reports.
"""
import json

import pytest
import requests

from portal import apikeys, calls, ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey
from portal.pricing import Usage, quote
from proxy import holds
from tests.factories import make_user
from tests.proxy.conftest import CLAUDE, CREDIT, GPT, balance, records

ROUTES = {
    "chat": ("/v1/chat/completions", {"model": "gpt-test", "max_completion_tokens": 1000,
                                      "messages": [{"role": "user", "content": "hi"}]}),
    "messages": ("/v1/messages", {"model": "claude-test", "max_tokens": 1000,
                                  "messages": [{"role": "user", "content": "hi"}]}),
    "responses": ("/v1/responses", {"model": "gpt-test", "max_output_tokens": 1000, "input": "hi"}),
}
PRICES = {"chat": GPT, "messages": CLAUDE, "responses": GPT}


def post(gateway, key, path, body, **kw):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{gateway}{path}", data=raw, timeout=10,
                         headers={"Authorization": f"Bearer {key}", "content-type": "application/json"}, **kw)


def assert_bad_request(response, path, *phrases):
    assert response.status_code == 400, response.text
    body = response.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        message = body["error"]["message"]
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
        message = body["error"]["message"]
    for phrase in phrases:
        assert phrase in message, message


def worst_case(route: str, body: dict) -> Usage:
    """What the gateway holds for: input at body bytes / 2, output at the limit."""
    raw = json.dumps(body).encode()
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
    return Usage(input=holds.hold_input_tokens(len(raw)), output=limit * body.get("n", 1))


def hold_for(route: str, body: dict) -> int:
    """The hold: the worst case with its input at the dearest input-side rate (Claude's cache writes)."""
    return calls.hold_amount(PRICES[route], worst_case(route, body))


def worst_cost(route: str, body: dict) -> int:
    """What an unmeterable success is charged: the worst case's input and output at their own rates."""
    return quote(PRICES[route], worst_case(route, body))


# -- 1. fields billing depends on are checked by type and range ---------------------------
# (every value and encoding is tried against the parser in tests/unit/test_rewrite.py; here, that
# a refusal comes in the route's own shape and nothing reaches the upstream or the books)

@pytest.mark.parametrize("route, field, value, phrase", [
    ("chat", "stream", "true", "stream must be true or false"),
    ("messages", "stream", 1, "stream must be true or false"),
    ("responses", "stream", "true", "stream must be true or false"),
    ("chat", "stream_options", {"include_usage": "true"}, "include_usage must be true or false"),
    ("messages", "max_tokens", "100", "max_tokens must be a positive whole number"),
    ("responses", "max_output_tokens", 1.5, "max_output_tokens must be a positive whole number"),
    ("chat", "n", 129, "n must be a positive whole number from 1 to 128"),
])
@pytest.mark.one_backend  # input checks no database can change
def test_a_billing_field_of_the_wrong_type_is_refused(gateway, fake, key, route, field, value, phrase):
    path, body = ROUTES[route]
    extra = {"stream": True} if field == "stream_options" else {}
    assert_bad_request(post(gateway, key, path, {**body, **extra, field: value}), path, phrase)
    assert fake.received == [] and records() == []


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_two_parsers_could_read_differently_is_refused(gateway, fake, key, route):
    path, body = ROUTES[route]
    raw = json.dumps({**body, "stream": False})[:-1].encode() + b', "stream": true}'
    assert_bad_request(post(gateway, key, path, raw), path, "twice")
    assert fake.received == [] and records() == []


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/messages/count_tokens"])
def test_stream_is_refused_where_it_means_nothing(gateway, fake, key, path):
    model = "claude-test" if "messages" in path else "gpt-test"
    assert_bad_request(post(gateway, key, path, {"model": model, "input": "x", "messages": [], "stream": True}),
                       path, "stream is not supported")
    assert fake.received == []


# -- 1. a success that cannot be metered is charged the hold's worst case --------------------

@pytest.mark.parametrize("route", ROUTES)
def test_a_stream_where_a_body_was_expected_is_charged_the_worst_case(gateway, fake, key, route):
    path, body = ROUTES[route]
    fake.next(force_stream=True, input=11, output=1000)
    response = post(gateway, key, path, body)
    assert response.status_code == 200
    [record] = records()
    assert (record.cost, record.hold_amount) == (worst_cost(route, body), hold_for(route, body))
    assert (record.usage_estimated, record.output_tokens) == (True, 1000)
    assert balance(gateway, key)["balance_micro_usd"] == CREDIT - record.cost
    assert ledger.verify() == []


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("raw_body", [b"not json", b"[1, 2]", b'{"unexpected": true}'])
def test_an_unreadable_success_is_charged_the_worst_case(gateway, fake, key, route, raw_body):
    path, body = ROUTES[route]
    fake.next(raw_body=raw_body)
    assert post(gateway, key, path, body).status_code == 200
    [record] = records()
    assert (record.cost, record.usage_estimated) == (worst_cost(route, body), True)
    assert ledger.verify() == []


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_where_a_stream_was_asked_for_is_metered_from_its_usage(gateway, fake, key, route):
    path, body = ROUTES[route]
    fake.next(force_stream=False, input=11, output=700)
    response = post(gateway, key, path, {**body, "stream": True})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    [record] = records()
    assert (record.output_tokens, record.usage_estimated) == (700, False)
    assert record.cost == quote(PRICES[route], Usage(input=11, output=700))


@pytest.mark.parametrize("route", ROUTES)
def test_usage_that_cannot_be_right_is_charged_the_worst_case(gateway, fake, key, route):
    path, body = ROUTES[route]
    fake.next(output=60_000_000)  # beyond any real call: refused, not believed
    assert post(gateway, key, path, body).status_code == 200
    [record] = records()
    assert (record.cost, record.usage_estimated) == (worst_cost(route, body), True)


# -- 2. a charge is bounded by what the request could cost ---------------------------------

def poor_key(credit=10_000) -> str:
    user = make_user("poor@example.com", credit=credit)
    with atomic():
        return apikeys.issue(user, "poor")[1]


def test_n_multiplies_the_hold(app, catalog_ready, gateway, fake):
    key = poor_key()  # $0.01
    path, body = ROUTES["chat"]
    refused = post(gateway, key, path, {**body, "max_completion_tokens": 10, "n": 128})
    assert refused.status_code == 402
    assert "10 output tokens for each of 128 choices" in refused.json()["error"]["message"]
    assert "smaller max_tokens or n" in refused.json()["error"]["message"]
    assert fake.received == []
    fake.next(output=40)  # four choices of ten tokens each
    assert post(gateway, key, path, {**body, "max_completion_tokens": 10, "n": 4}).status_code == 200
    [record] = records()
    assert record.output_tokens == 40 and not record.usage_clamped
    assert record.hold_amount >= quote(GPT, Usage(output=40))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("stream", [False, True])
def test_output_beyond_the_limit_is_charged_at_the_limit(app, catalog_ready, gateway, fake, route, stream):
    key = poor_key()
    path, body = ROUTES[route]
    body = {**body, next(f for f in ("max_completion_tokens", "max_tokens", "max_output_tokens") if f in body): 10}
    fake.next(input=11, output=49_000_000)
    response = post(gateway, key, path, {**body, "stream": stream}, stream=stream)
    assert response.status_code == 200
    response.content
    [record] = records()
    assert (record.output_tokens, record.input_tokens, record.usage_clamped) == (10, 11, True)
    assert record.cost == quote(PRICES[route], Usage(input=11, output=10))
    assert balance(gateway, key)["balance_micro_usd"] == 10_000 - record.cost > 0
    key_row = db.session.scalar(db.select(ApiKey))
    assert key_row.spent_total == record.cost  # spend caps count the bounded cost too
    assert ledger.verify() == []


def test_chat_output_is_bounded_by_n_times_the_limit(app, catalog_ready, gateway, fake):
    key = poor_key(credit=1_000_000)
    path, body = ROUTES["chat"]
    fake.next(output=5_000)
    assert post(gateway, key, path, {**body, "max_completion_tokens": 100, "n": 3}).status_code == 200
    [record] = records()
    assert (record.output_tokens, record.usage_clamped) == (300, True)


@pytest.mark.parametrize("route", ROUTES)
def test_input_beyond_what_the_body_allows_is_charged_at_the_ceiling(app, catalog_ready, gateway, fake, route):
    key = poor_key(credit=1_000_000)
    path, body = ROUTES[route]
    raw = json.dumps(body).encode()
    ceiling = len(raw) + holds.CEILING_OVERHEAD_TOKENS
    fake.next(input=ceiling + 1_000_000, cache_read=0, output=5)
    assert post(gateway, key, path, raw).status_code == 200
    [record] = records()
    assert record.usage_clamped
    assert record.input_tokens + record.cache_read_tokens + record.cache_write_5m_tokens == ceiling
    assert record.cost == quote(PRICES[route], Usage(input=record.input_tokens, cache_read=record.cache_read_tokens,
                                                     cache_write_5m=record.cache_write_5m_tokens, output=5))
    assert ledger.verify() == []


def test_cache_classes_count_against_the_input_ceiling(app, catalog_ready, gateway, fake):
    key = poor_key(credit=1_000_000)
    path, body = ROUTES["messages"]
    raw = json.dumps(body).encode()
    ceiling = len(raw) + holds.CEILING_OVERHEAD_TOKENS
    fake.next(input=ceiling - 100, cache_write=5_000, cache_read=9_000_000, output=5)
    assert post(gateway, key, path, raw).status_code == 200
    [record] = records()
    assert (record.input_tokens, record.cache_write_5m_tokens, record.cache_read_tokens) == (ceiling - 100, 100, 0)
    assert record.usage_clamped


def test_usage_within_the_bounds_is_charged_exactly(app, catalog_ready, gateway, fake):
    key = poor_key(credit=1_000_000)
    path, body = ROUTES["messages"]
    raw = json.dumps({**body, "system": "x" * 20_000}).encode()
    fake.next(input=3_000, cache_read=15_000, cache_write=2_000, output=1000)
    response = post(gateway, key, path, raw)
    assert response.status_code == 200
    [record] = records()
    assert not record.usage_clamped
    assert record.cost == quote(CLAUDE, Usage(input=3_000, cache_read=15_000, cache_write_5m=2_000, output=1000))
    assert response.headers["X-Charge-Micro-USD"] == str(record.cost)  # what a complete response was charged


@pytest.mark.parametrize("route", ROUTES)
def test_each_output_side_class_counts_against_the_output_limit(app, catalog_ready, gateway, fake, route):
    key = poor_key(credit=1_000_000)
    path, body = ROUTES[route]
    body = {**body, next(f for f in ("max_completion_tokens", "max_tokens", "max_output_tokens") if f in body): 100}
    dialect = "anthropic" if route == "messages" else "openai"
    fake.next(dialect=dialect, input=11, output=60, reasoning=70)  # 130 output-side tokens for a limit of 100
    assert post(gateway, key, path, body).status_code == 200
    [record] = records()
    assert record.usage_clamped
    assert record.output_tokens + record.reasoning_tokens == 100
    assert record.cost == quote(PRICES[route], Usage(input=11, output=record.output_tokens,
                                                     reasoning=record.reasoning_tokens))


def test_server_side_content_gets_a_wider_ceiling(app, catalog_ready, gateway, fake):
    key = poor_key(credit=10_000_000)
    path, body = ROUTES["responses"]
    fake.next(input=500_000, output=5)  # an earlier conversation stored upstream
    assert post(gateway, key, path, {**body, "previous_response_id": "resp_123"}).status_code == 200
    [record] = records()
    assert (record.input_tokens, record.usage_clamped) == (500_000, False)
