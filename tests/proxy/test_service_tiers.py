"""Service tiers in requests (docs/billing.md, "Tiers"): a tier the model has no prices for is refused,
or left out of the request when the operator chose "strip" for the model; priced and standard
tiers go upstream as sent, and the call is charged at the tier the response reports.
"""
import json

import pytest
import requests

from portal import catalog
from portal.database import atomic
from portal.pricing import Price, Usage, quote
from proxy import holds
from tests.proxy.conftest import records

pytestmark = pytest.mark.one_backend  # request reading and price arithmetic (conftest.py)

M = 1_000_000
TIERED = Price(input=1 * M, output=2 * M, service_tiers={"priority": {"input": 3 * M, "output": 6 * M},
                                                         "flex": {"input": M // 2, "output": 1 * M}})
PLAIN = Price(input=1 * M, output=2 * M)
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}


@pytest.fixture
def models(catalog_ready):
    with atomic():
        for vendor, upstream in (("openai", "fake-openai"), ("anthropic", "fake-anthropic")):
            catalog.set_model(f"plain-{vendor}", upstream, PLAIN, max_output_tokens=1_000)
            catalog.set_model(f"tiered-{vendor}", upstream, TIERED, max_output_tokens=1_000)
            catalog.set_model(f"lenient-{vendor}", upstream, PLAIN, max_output_tokens=1_000, unpriced_tier="strip")


def body_for(route: str, model: str, **extra) -> dict:
    if route == "responses":
        return {"model": model, "max_output_tokens": 100, "input": "hi", **extra}
    limit = "max_tokens" if route == "messages" else "max_completion_tokens"
    return {"model": model, limit: 100, "messages": [{"role": "user", "content": "hi"}], **extra}


def vendor_of(route: str) -> str:
    return "anthropic" if route == "messages" else "openai"


def post(gateway, key, route: str, body: dict) -> requests.Response:
    return requests.post(f"{gateway}{PATHS[route]}", data=json.dumps(body), timeout=10,
                         headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})


def error_message(response, route: str) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    if route == "messages":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["type"] == "invalid_request_error"
    return body["error"]["message"]


@pytest.mark.parametrize("route, model, tier, phrases", [
    ("chat", "plain-openai", "priority",
     ['service_tier "priority" is not offered for the model \'plain-openai\'',
      'it has prices only for the standard tier ("auto" or "default")', "leave service_tier out"]),
    ("responses", "plain-openai", "flex", ['service_tier "flex"', '("auto" or "default")']),
    ("messages", "plain-anthropic", "priority", ['("auto" or "standard_only")']),
    ("chat", "tiered-openai", "scale",
     ['service_tier "scale"', 'it has prices for the service tiers flex, priority, besides "auto" or "default"']),
    ("messages", "tiered-anthropic", "batch", ['flex, priority, besides "auto" or "standard_only"']),
])
def test_a_tier_without_prices_is_refused(gateway, fake, key, models, route, model, tier, phrases):
    message = error_message(post(gateway, key, route, body_for(route, model, service_tier=tier)), route)
    for phrase in phrases:
        assert phrase in message, message
    assert fake.received == [] and records() == []


@pytest.mark.parametrize("route", PATHS)
def test_a_tier_of_the_wrong_type_is_refused(gateway, fake, key, models, route):
    message = error_message(post(gateway, key, route, body_for(route, f"tiered-{vendor_of(route)}",
                                                               service_tier=["priority"])), route)
    assert "service_tier must be a string" in message
    assert fake.received == []


@pytest.mark.parametrize("route", PATHS)
def test_a_tier_without_prices_is_stripped_when_the_operator_says_so(gateway, fake, key, models, route):
    body = body_for(route, f"lenient-{vendor_of(route)}", service_tier="priority", temperature=0.5)
    assert post(gateway, key, route, body).status_code == 200
    [sent] = fake.received
    assert "service_tier" not in sent.json and sent.json["temperature"] == 0.5
    [record] = records()
    assert record.hold_amount == holds.hold_input_tokens(len(json.dumps(body))) + 100 * 2  # base prices


@pytest.mark.parametrize("route, model, tier", [
    ("chat", "tiered-openai", "priority"),
    ("chat", "tiered-openai", "flex"),
    ("responses", "tiered-openai", "priority"),
    ("chat", "plain-openai", "default"),
    ("chat", "plain-openai", "auto"),
    ("responses", "lenient-openai", "default"),
    ("messages", "plain-anthropic", "standard_only"),
    ("messages", "plain-anthropic", "auto"),
    ("messages", "tiered-anthropic", "priority"),
])
def test_priced_and_standard_tiers_go_upstream_as_sent(gateway, fake, key, models, route, model, tier):
    assert post(gateway, key, route, body_for(route, model, service_tier=tier)).status_code == 200
    [sent] = fake.received
    assert sent.json["service_tier"] == tier


@pytest.mark.parametrize("route", PATHS)
def test_the_call_is_charged_at_the_tier_the_response_reports(gateway, fake, key, models, route):
    vendor = vendor_of(route)
    fake.next(dialect=vendor, input=1_000, output=100, service_tier="priority")
    assert post(gateway, key, route, body_for(route, f"tiered-{vendor}")).status_code == 200
    [record] = records()
    assert (record.service_tier, record.cost, record.flags) == ("priority", 1_000 * 3 + 100 * 6, None)


@pytest.mark.parametrize("route", PATHS)
def test_a_reported_tier_without_prices_is_charged_at_base_prices_and_flagged(gateway, fake, key, models, route):
    vendor = vendor_of(route)
    fake.next(dialect=vendor, input=1_000, output=100, service_tier="priority")
    assert post(gateway, key, route, body_for(route, f"plain-{vendor}")).status_code == 200
    [record] = records()
    assert record.cost == quote(PLAIN, Usage(input=1_000, output=100)) == 1_000 + 100 * 2
    assert (record.service_tier, record.flags) == ("priority", ["unpriced tier: priority"])
