"""Charges the caller can read: GET /v1/generations/{id}, the X-Charge-Micro-USD header, prices in /v1/models.

Every call goes through the gateway (waitress on loopback) to the fake upstream, as a client makes it.
"""
import re

import pytest
import requests
from anthropic import Anthropic
from openai import OpenAI

from portal import apikeys, catalog, users
from portal.database import atomic
from portal.pricing import TOKEN_CLASSES, Price
from tests.factories import make_user
from tests.proxy.conftest import CREDIT, balance, records, wait_for_records

M = 1_000_000
SONNET = Price(input=3 * M, output=15 * M, cache_read=300_000, cache_write_5m=3_750_000, cache_write_1h=6 * M,
               fees={"web_search": 10 * M}, long_context_above=3_000,
               long_context={"input": 6 * M, "output": 22_500_000, "cache_read": 600_000,
                             "cache_write_5m": 7_500_000, "cache_write_1h": 12 * M},
               service_tiers={"priority": {"output": 30 * M}})
# What the fake reports: 2,000 + 1,001 + 400 + 100 = 3,501 input-side tokens, above 3,000: long context.
REPORTED = dict(dialect="anthropic", input=2_000, cache_read=1_001, cache_write=400, cache_write_1h=100, output=301,
                units={"web_search": 3}, service_tier="priority")
# In millionths of a micro-dollar:
#   input 2,000 x 6,000,000 = 12,000,000,000      cache read 1,001 x 600,000 = 600,600,000
#   cache write 5m 400 x 7,500,000 = 3,000,000,000  cache write 1h 100 x 12,000,000 = 1,200,000,000
#   output 301 x 30,000,000 (priority) = 9,030,000,000   web search 3 x 10,000,000 x 1,000 = 30,000,000,000
#   total 55,830,600,000 -> 55,830.6 -> 55,831 micro-dollars
EXACT, COST = 55_830_600_000, 55_831
ANTHROPIC = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


@pytest.fixture
def sonnet(catalog_ready):
    with atomic():
        catalog.set_model("sonnet-gen", "fake-anthropic", SONNET, upstream_model="claude-sonnet-4-5",
                          max_output_tokens=8192)


def messages(gateway, key, *, stream=False) -> requests.Response:
    body = {"model": "sonnet-gen", "max_tokens": 1000, "stream": stream,
            "system": "You are terse. " * 400,  # a body that can account for the 3,501 input tokens reported
            "messages": [{"role": "user", "content": "What happened today?"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}
    return requests.post(f"{gateway}/v1/messages", json=body, headers={**ANTHROPIC, "x-api-key": key},
                         stream=stream, timeout=20)


def generation(gateway, key, request_id) -> requests.Response:
    return requests.get(f"{gateway}/v1/generations/{request_id}", headers={"Authorization": f"Bearer {key}"},
                        timeout=10)


def test_generation_of_a_call_with_every_kind_of_charge(gateway, fake, key, sonnet):
    fake.next(**REPORTED)
    reply = messages(gateway, key)
    assert reply.status_code == 200, reply.text
    request_id = reply.headers["X-Request-Id"]
    assert CREDIT - balance(gateway, key)["balance_micro_usd"] == COST
    assert reply.headers["X-Charge-Micro-USD"] == str(COST)

    response = generation(gateway, key, request_id)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    body = response.json()
    [record] = records()
    entry = body.pop("ledger_entry")
    assert entry["amount_micro_usd"] == -COST and entry["id"] == record.ledger_entry_id
    assert re.fullmatch(r"[0-9a-f]{64}", entry["hash"])
    assert isinstance(body.pop("created"), int) and isinstance(body["prices"].pop("since"), int)
    assert body.pop("prices") == {
        "id": record.price_id, "service_tier": "priority", "long_context_above_input_tokens": 3_000,
        "usd_per_million": {"input": "6", "output": "30", "cache_read": "0.6", "cache_write_5m": "7.5",
                            "cache_write_1h": "12", "input_audio": "12", "output_audio": "12", "reasoning": "30"},
        "usd_per_thousand": {"web_search": "10"}}
    lines = {line.get("class") or line.get("unit"): line for line in body.pop("lines")}
    assert list(lines) == [*TOKEN_CLASSES, "web_search"]  # every class, used or not, then the fees
    assert lines["input"] == {"class": "input", "quantity": 2_000, "rate_micro_usd": 6 * M,
                              "amount_millionths": 12_000_000_000, "note": "long context"}
    assert lines["output"]["note"] == "priority tier" and lines["output"]["amount_millionths"] == 9_030_000_000
    assert lines["web_search"] == {"unit": "web_search", "quantity": 3, "rate_micro_usd": 10 * M,
                                   "amount_millionths": 30_000_000_000, "note": ""}
    assert lines["input_audio"]["quantity"] == 0 and lines["input_audio"]["amount_millionths"] == 0
    assert sum(line["amount_millionths"] for line in lines.values()) == EXACT
    assert body == {
        "id": request_id, "object": "generation", "model": "sonnet-gen", "status": "ok", "http_status": 200,
        "streamed": False, "route": "messages",
        "tokens": {"input": 2_000, "output": 301, "cache_read": 1_001, "cache_write_5m": 400, "cache_write_1h": 100,
                   "input_audio": 0, "output_audio": 0, "reasoning": 0},
        "units": {"web_search": 3}, "service_tier": "priority", "long_context": True,
        "exact_millionths_micro_usd": EXACT, "charge_micro_usd": COST, "charge_usd": "0.055831",
        "estimated": False, "clamped": False, "flags": [], "hold_micro_usd": record.hold_amount,
        "attempts": [{"result": "ok"}],
    }


def test_a_streamed_call_has_its_receipt_when_the_stream_ends(gateway, fake, key, sonnet):
    fake.next(**REPORTED)
    with messages(gateway, key, stream=True) as reply:
        assert reply.status_code == 200 and "X-Charge-Micro-USD" not in reply.headers  # not known yet
        request_id = reply.headers["X-Request-Id"]
        events = list(reply.iter_lines())
    assert b"event: message_stop" in events
    body = generation(gateway, key, request_id).json()  # no wait: the stream settles before its last event
    assert (body["streamed"], body["status"], body["charge_micro_usd"]) == (True, "ok", COST)
    assert body["ledger_entry"]["amount_micro_usd"] == -COST
    assert CREDIT - balance(gateway, key)["balance_micro_usd"] == COST


def test_only_the_callers_own_account(gateway, fake, key, sonnet):
    fake.next(**REPORTED)
    request_id = messages(gateway, key).headers["X-Request-Id"]
    stranger = make_user("stranger@example.com", credit=CREDIT)
    with atomic():
        _, other_key = apikeys.issue(stranger, "other")
    theirs, unknown = generation(gateway, other_key, request_id), generation(gateway, other_key, "req_" + "0" * 24)
    assert theirs.status_code == unknown.status_code == 404
    # The same answer as for an id that does not exist, but for the id it names.
    assert theirs.json() == {"error": {
        "message": f"No call '{request_id}' on this account. Use the X-Request-Id header of a response to a key of "
                   "this account; the portal's Usage page lists every call.",
        "type": "invalid_request_error", "param": None, "code": "generation_not_found"}}
    assert theirs.text.replace(request_id, "req_" + "0" * 24) == unknown.text
    # Any key of the owner's account reads it.
    with atomic():
        _, second_key = apikeys.issue(users.find_user("caller@example.com"), "second")
    assert generation(gateway, second_key, request_id).status_code == 200
    missing = requests.get(f"{gateway}/v1/generations/{request_id}", timeout=10)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"


def test_charge_header_equals_the_ledger_charge(gateway, fake, key, sonnet):
    with OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=20) as client:
        fake.next(input=1_200, cache_read=300, output=57)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=100)
        assert raw.parse().choices[0].message.content == "Hello from the fake upstream"
    [record] = wait_for_records(1)
    assert raw.headers["X-Charge-Micro-USD"] == str(record.cost) == str(CREDIT - balance(gateway, key)["balance_micro_usd"])
    assert raw.headers["X-Request-Id"] == record.request_id
    # Nothing charged, no header: the upstream refused the call.
    fake.next(status=400, error_message="bad request")
    refused = requests.post(f"{gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                            json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 400 and "X-Request-Id" in refused.headers
    assert "X-Charge-Micro-USD" not in refused.headers


def test_models_carry_their_prices_in_both_shapes(gateway, key, sonnet):
    expected = {
        "usd_per_million": {"input": "3", "output": "15", "cache_read": "0.3", "cache_write_5m": "3.75",
                            "cache_write_1h": "6"},
        "usd_per_thousand": {"web_search": "10"},
        "long_context": {"above_input_tokens": 3_000,
                         "usd_per_million": {"input": "6", "output": "22.5", "cache_read": "0.6",
                                             "cache_write_5m": "7.5", "cache_write_1h": "12"}},
        "service_tiers": {"priority": {"usd_per_million": {"output": "30"}}},
        # The same base prices as OpenRouter lists them: USD per token, per use for fees.
        "prompt": "0.000003", "completion": "0.000015", "input_cache_read": "0.0000003",
        "input_cache_write": "0.00000375", "input_cache_write_1h": "0.000006", "request": "0", "web_search": "0.01",
    }
    with OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=20) as client:
        listed = {m.id: m for m in client.models.list()}
    assert listed["sonnet-gen"].model_extra["pricing"] == expected
    assert listed["gpt-test"].model_extra["pricing"] == {
        "usd_per_million": {"input": "2", "output": "8", "cache_read": "0.5"},
        "prompt": "0.000002", "completion": "0.000008", "input_cache_read": "0.0000005", "request": "0"}
    with Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=20) as client:
        listed = {m.id: m for m in client.models.list()}
    assert listed["sonnet-gen"].model_extra["pricing"] == expected
    assert listed["sonnet-gen"].type == "model"
