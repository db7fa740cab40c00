"""Holds that cover what a call can be charged (docs/billing.md, "Holds").

Every rate, tier, tool fee and input the request could bring: the hold is what the call could
cost. Amounts below are worked by hand at prices of whole micro-dollars per token.
"""
import json

import pytest
import requests

from portal import apikeys, catalog
from portal.database import atomic
from portal.pricing import Price
from proxy import holds
from tests.factories import make_user
from tests.proxy.conftest import records

pytestmark = pytest.mark.one_backend  # request reading and price arithmetic (conftest.py)

M = 1_000_000
BASE = dict(input=1 * M, output=2 * M)  # per token: 1 in, 2 out
FEES = {"web_search": 10 * M, "web_fetch": 5 * M, "file_search": 2 * M, "code_container": 30 * M,  # per use: 10,000 ...
        "search_sources": 25 * M}
LONG = Price(**BASE, long_context_above=1_000, long_context={"input": 4 * M, "output": 8 * M})
TIERED = Price(**BASE, service_tiers={"priority": {"input": 3 * M, "output": 6 * M},
                                      "flex": {"input": M // 2, "output": 1 * M}})
TOOLED = Price(**BASE, fees=FEES)
WINDOW = 10_000  # the tool and reference models' context window
TOOL_CEILING = 7


@pytest.fixture
def app_config(app_config):
    return {**app_config, "TOOL_CALLS_CEILING": TOOL_CEILING}


@pytest.fixture
def models(catalog_ready):
    with atomic():
        for name, upstream in (("openai", "fake-openai"), ("anthropic", "fake-anthropic")):
            catalog.set_model(f"long-{name}", upstream, LONG, max_output_tokens=1_000)
            catalog.set_model(f"tiered-{name}", upstream, TIERED, max_output_tokens=1_000)
            catalog.set_model(f"tooled-{name}", upstream, TOOLED, max_output_tokens=1_000, context_window=WINDOW)
            catalog.set_model(f"strict-{name}", upstream, TOOLED, max_output_tokens=1_000, context_window=WINDOW,
                              input_by_reference="refuse")
        catalog.set_model("capped-anthropic", "fake-anthropic", TOOLED, max_output_tokens=1_000,
                          context_window=WINDOW, tool_calls_ceiling=4)


def key_with(credit: int) -> str:
    user = make_user(f"holder{credit}@example.com", credit=credit)
    with atomic():
        return apikeys.issue(user, "holds")[1]


@pytest.fixture
def key(models):
    return key_with(100 * M)


PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}


def body_for(route: str, model: str, text: str = "hi", **extra) -> dict:
    if route == "responses":
        return {"model": model, "max_output_tokens": 100, "input": text, **extra}
    limit = "max_tokens" if route == "messages" else "max_completion_tokens"
    return {"model": model, limit: 100, "messages": [{"role": "user", "content": text}], **extra}


def post(gateway, key, route: str, body: dict) -> requests.Response:
    return requests.post(f"{gateway}{PATHS[route]}", data=json.dumps(body), timeout=10,
                         headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})


def held(gateway, key, route: str, body: dict) -> int:
    response = post(gateway, key, route, body)
    assert response.status_code == 200, response.text
    return records()[-1].hold_amount


def input_tokens(body: dict) -> int:
    return holds.hold_input_tokens(len(json.dumps(body).encode()))


# -- long context ------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["chat", "messages"])
def test_long_context_rates_are_held_when_the_input_could_cross_the_threshold(gateway, fake, key, route):
    vendor = "anthropic" if route == "messages" else "openai"
    short = body_for(route, f"long-{vendor}", "x" * 1_500)
    assert input_tokens(short) <= 1_000
    assert held(gateway, key, route, short) == input_tokens(short) * 1 + 100 * 2
    long = body_for(route, f"long-{vendor}", "x" * 2_500)
    assert input_tokens(long) > 1_000
    assert held(gateway, key, route, long) == input_tokens(long) * 4 + 100 * 8


# -- service tiers -----------------------------------------------------------------------------

@pytest.mark.parametrize("route, tier, rates", [
    ("chat", None, (3, 6)),            # omitted: the upstream may serve any tier: the dearest, priority
    ("chat", "auto", (3, 6)),
    ("chat", "default", (1, 2)),       # pinned standard: the base prices only
    ("chat", "priority", (3, 6)),
    ("chat", "flex", (0.5, 1)),        # pinned flex: its own prices only
    ("responses", None, (3, 6)),
    ("responses", "default", (1, 2)),
    ("responses", "flex", (0.5, 1)),
    ("messages", None, (3, 6)),
    ("messages", "auto", (3, 6)),
    ("messages", "standard_only", (1, 2)),
])
def test_the_hold_covers_every_tier_the_call_could_be_served_at(gateway, fake, key, route, tier, rates):
    vendor = "anthropic" if route == "messages" else "openai"
    extra, text = ({"service_tier": tier} if tier else {}), "x" * 200
    while input_tokens(body := body_for(route, f"tiered-{vendor}", text, **extra)) % 2:
        text += "xx"  # an even count: whole micro-dollars at flex's 0.5
    tokens = input_tokens(body)
    assert held(gateway, key, route, body) == int(tokens * rates[0] + 100 * rates[1])


# -- server tools ------------------------------------------------------------------------------
# A server tool brings input the body does not show (search results, files): the input is held at
# the context window too.

WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}
WEB_FETCH = {"type": "web_fetch_20250910", "name": "web_fetch"}
CODE = {"type": "code_execution_20250825", "name": "code_execution"}


@pytest.mark.parametrize("model, tools, uses", [
    ("tooled-anthropic", [{**WEB_SEARCH, "max_uses": 3}], 3 * 10_000),
    ("tooled-anthropic", [WEB_SEARCH], TOOL_CEILING * 10_000),          # no limit: the operator's ceiling
    ("capped-anthropic", [WEB_SEARCH], 4 * 10_000),                     # the model's own ceiling
    ("tooled-anthropic", [{**WEB_FETCH, "max_uses": 2}, CODE], 2 * 5_000 + TOOL_CEILING * 30_000),
    ("tooled-anthropic", [{**WEB_SEARCH, "max_uses": 1}, {**WEB_SEARCH, "name": "second", "max_uses": 2}],
     3 * 10_000),
    ("tooled-anthropic", [{"name": "get_weather", "input_schema": {"type": "object"}}], None),  # the client's own
])
def test_anthropic_server_tools_are_held_at_their_max_uses(gateway, fake, key, model, tools, uses):
    body = body_for("messages", model, tools=tools)
    if uses is None:
        assert held(gateway, key, "messages", body) == input_tokens(body) + 100 * 2
    else:
        assert held(gateway, key, "messages", body) == WINDOW * 1 + 100 * 2 + uses


@pytest.mark.parametrize("extra, uses", [
    ({"max_tool_calls": 2, "tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                                     {"type": "code_interpreter", "container": {"type": "auto"}}]},
     2 * (10_000 + 2_000 + 30_000)),   # each tool could take all of max_tool_calls
    ({"tools": [{"type": "web_search_preview"}]}, TOOL_CEILING * 10_000),
    ({"tools": [{"type": "mcp", "server_label": "x", "server_url": "https://mcp.example.com"}]}, 0),  # no fee
])
def test_responses_server_tools_are_held_at_max_tool_calls(gateway, fake, key, extra, uses):
    body = body_for("responses", "tooled-openai", **extra)
    assert held(gateway, key, "responses", body) == WINDOW * 1 + 100 * 2 + uses


def test_chat_web_search_options_are_held_at_the_ceiling(gateway, fake, key):
    body = body_for("chat", "tooled-openai", web_search_options={})
    assert held(gateway, key, "chat", body) == WINDOW * 1 + 100 * 2 + TOOL_CEILING * 10_000


@pytest.mark.parametrize("options, sources", [
    ({"mode": "auto", "max_search_results": 3}, 3),
    ({"mode": "on"}, TOOL_CEILING),
    ({"mode": "off", "max_search_results": 3}, None),  # no search: the body is all the input
])
def test_xai_live_search_is_held_at_its_max_search_results(gateway, fake, key, options, sources):
    body = body_for("chat", "tooled-openai", search_parameters=options)
    expected = input_tokens(body) + 100 * 2 if sources is None else WINDOW * 1 + 100 * 2 + sources * 25_000
    assert held(gateway, key, "chat", body) == expected


@pytest.mark.parametrize("route, body, phrase", [
    ("messages", body_for("messages", "tooled-anthropic", tools=[{**WEB_SEARCH, "max_uses": 0}]),
     "tools[0].max_uses must be a positive whole number, got 0"),
    ("messages", body_for("messages", "tooled-anthropic", tools=[{"name": "f"}, {**WEB_SEARCH, "max_uses": "5"}]),
     "tools[1].max_uses must be a positive whole number"),
    ("responses", body_for("responses", "tooled-openai", max_tool_calls=2.5, tools=[{"type": "web_search"}]),
     "max_tool_calls must be a positive whole number, got 2.5"),
])
def test_a_tool_limit_that_is_not_a_count_is_refused(gateway, fake, key, route, body, phrase):
    response = post(gateway, key, route, body)
    assert response.status_code == 400 and phrase in response.text
    assert fake.received == [] and records() == []


def test_tool_uses_are_charged_at_most_the_requests_limit(gateway, fake, key):
    fake.next(dialect="anthropic", units={"web_search": 9, "web_fetch": 2})
    body = body_for("messages", "tooled-anthropic", tools=[{**WEB_SEARCH, "max_uses": 3}])
    assert post(gateway, key, "messages", body).status_code == 200
    [record] = records()
    # Three searches at most; no fetch tool was offered, so no fetch can be charged.
    assert (record.units, record.usage_clamped) == ({"web_search": 3}, True)
    assert record.cost == 11 * 1 + 7 * 2 + 3 * 10_000


# -- input by reference ------------------------------------------------------------------------

IMAGE_URL = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
IMAGE_DATA = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
REFERENCES = [
    ("responses", {"previous_response_id": "resp_123"}, "previous_response_id"),
    ("responses", {"conversation": "conv_123"}, "conversation"),
    ("responses", {"prompt": {"id": "pmpt_123"}}, "prompt"),
    ("responses", {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-123"}]}]},
     "a file id"),
    ("responses", {"input": [{"role": "user", "content": [{"type": "input_image",
                                                           "image_url": "https://example.com/cat.png"}]}]},
     "a media URL"),
    ("responses", {"input": [{"type": "item_reference", "id": "msg_123"}]}, "an item_reference"),
    ("chat", {"messages": [{"role": "user", "content": [IMAGE_URL]}]}, "a media URL"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
     "a file id"),
    ("messages", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}]}, "a media URL"),
    ("messages", {"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": "file_123"}}]}]}, "a file id"),
    ("messages", {"tools": [{**WEB_SEARCH, "max_uses": 1}]}, "the web_search_20250305 tool"),
    ("messages", {"mcp_servers": [{"type": "url", "url": "https://mcp.example.com", "name": "x"}]}, "mcp_servers"),
]


def vendor_of(route):
    return "anthropic" if route == "messages" else "openai"


@pytest.mark.parametrize("route, extra, why", REFERENCES)
def test_input_by_reference_is_held_at_the_context_window(gateway, fake, key, route, extra, why):
    body = {**body_for(route, f"tooled-{vendor_of(route)}"), **extra}
    uses = 10_000 if "tools" in extra else 0
    assert held(gateway, key, route, body) == WINDOW * 1 + 100 * 2 + uses


@pytest.mark.parametrize("route, extra", [
    ("chat", {"messages": [{"role": "user", "content": [IMAGE_DATA, {"type": "text", "text": "what is this?"}]}]}),
    ("messages", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]}),
    ("responses", {"input": [{"role": "user", "content": [{"type": "input_file", "filename": "a.pdf",
                                                           "file_data": "data:application/pdf;base64,JVBERi0="}]}]}),
])
def test_media_given_inline_is_in_the_body(gateway, fake, key, route, extra):
    body = {**body_for(route, f"strict-{vendor_of(route)}"), **extra}
    assert held(gateway, key, route, body) == input_tokens(body) * 1 + 100 * 2


@pytest.mark.parametrize("route, extra, why", REFERENCES)
def test_a_model_that_takes_input_only_in_the_body_refuses_references(gateway, fake, key, route, extra, why):
    body = {**body_for(route, f"strict-{vendor_of(route)}"), **extra}
    response = post(gateway, key, route, body)
    assert response.status_code == 400, response.text
    if route == "messages":
        assert response.json()["type"] == "error"
        message = response.json()["error"]["message"]
    else:
        message = response.json()["error"]["message"]
    assert f"'strict-{vendor_of(route)}' takes input only in the request body" in message
    assert why in message and "inline" in message
    assert fake.received == [] and records() == []


# -- what a refused hold says -----------------------------------------------------------------

def test_the_402_names_what_the_hold_covers_and_what_to_lower(gateway, fake, models):
    poor = key_with(1_000)
    body = body_for("messages", "tiered-anthropic")
    message = post(gateway, poor, "messages", {**body, "max_tokens": 1_000}).json()["error"]["message"]
    assert "at the dearest of the standard, flex, priority tiers" in message
    assert 'smaller max_tokens or service_tier "standard_only"' in message
    body = body_for("messages", "tooled-anthropic", tools=[WEB_SEARCH])
    message = post(gateway, poor, "messages", body).json()["error"]["message"]
    assert "held at the model's 10,000-token context window, for the web_search_20250305 tool" in message
    assert f"{TOOL_CEILING} web_search uses" in message
    assert "smaller max_tokens or max_uses on each server tool" in message
    body = body_for("responses", "tooled-openai", tools=[{"type": "web_search"}])
    message = post(gateway, poor, "responses", body).json()["error"]["message"]
    assert "smaller max_output_tokens or max_tool_calls" in message
    assert fake.received == [] and records() == []
