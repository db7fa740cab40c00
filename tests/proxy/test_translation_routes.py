"""A model whose routes speak different protocols: an OpenAI upstream first, an Anthropic one behind it.

Whichever route the client calls, each upstream gets the call in its own protocol (translated or
not), a failing first upstream fails over to the second, and the call is charged once, at the
model's price, by the usage the upstream that served reported.
"""
import pytest
import requests
from anthropic import Anthropic
from openai import OpenAI

from portal import catalog, ledger, routes
from portal.database import atomic
from portal.pricing import Price, Usage, quote
from tests.fake_upstream import ANTHROPIC_KEY
from tests.proxy.conftest import CREDIT, balance, wait_for_records

MIXED = Price(input=1_500_000, output=6_000_000, cache_read=150_000, cache_write_5m=1_875_000)
USAGE = Usage(input=420, cache_read=1800, cache_write_5m=300, output=16)
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def mixed(app, catalog_ready, second):
    """mixed-test: fake-openai (OpenAI chat, priority 1), then fake-claude on the second fake (Anthropic)."""
    with atomic():
        catalog.add_upstream("fake-claude", "anthropic", second.url, ANTHROPIC_KEY, allow_private_host=True)
        catalog.set_model("mixed-test", "fake-openai", MIXED, upstream_model="gpt-mixed", max_output_tokens=4096)
        routes.add_route("mixed-test", "fake-claude", upstream_model="claude-mixed", priority=2)
    return second


def answer(gateway, key, route: str, stream: bool) -> str:
    """The text of one call to mixed-test through `route`, with the official SDK of its protocol."""
    if route == "messages":
        with Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=20) as client:
            if stream:
                with client.messages.stream(model="mixed-test", max_tokens=100, messages=HI) as events:
                    return events.get_final_message().content[0].text
            return client.messages.create(model="mixed-test", max_tokens=100, messages=HI).content[0].text
    with OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0, timeout=20) as client:
        if route == "chat":
            if stream:
                chunks = client.chat.completions.create(model="mixed-test", messages=HI, max_tokens=100, stream=True)
                return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return client.chat.completions.create(model="mixed-test", messages=HI,
                                                  max_tokens=100).choices[0].message.content
        if stream:
            with client.responses.stream(model="mixed-test", input="hi", max_output_tokens=100,
                                         store=False) as events:
                return events.get_final_response().output_text
        return client.responses.create(model="mixed-test", input="hi", max_output_tokens=100,
                                       store=False).output_text


# The route each upstream is called on for each client route: the OpenAI upstream speaks both of
# OpenAI's natively; the Anthropic one takes everything as Messages.
FIRST_PATH = {"messages": "/v1/chat/completions", "chat": "/v1/chat/completions", "responses": "/v1/responses"}


@pytest.mark.parametrize("route", ["messages", "chat", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_failing_openai_upstream_fails_over_to_an_anthropic_one(gateway, key, fake, mixed, route, stream):
    fake.next(status=500)
    mixed.next(dialect="anthropic", input=USAGE.input, cache_read=USAGE.cache_read,
               cache_write=USAGE.cache_write_5m, output=USAGE.output)
    assert answer(gateway, key, route, stream) == "Hello from the fake upstream"
    expected = quote(MIXED, USAGE)
    assert expected == 630 + 270 + 563 + 96
    money = balance(gateway, key)  # settled once the answer (or the stream's last event) is in
    assert (CREDIT - money["balance_micro_usd"], money["held_micro_usd"]) == (expected, 0)
    [first], [second] = fake.received, mixed.received
    assert (first.path, first.json["model"]) == (FIRST_PATH[route], "gpt-mixed")
    assert (second.path, second.json["model"], second.headers["x-api-key"]) == ("/v1/messages", "claude-mixed",
                                                                                ANTHROPIC_KEY)
    assert second.json["messages"] == [{"role": "user", "content": "hi" if route == "messages" else
                                        [{"type": "text", "text": "hi"}]}]
    [record] = wait_for_records(1)
    assert [(a["upstream"], a["result"]) for a in record.attempts] == [("fake-openai", "status_500"),
                                                                      ("fake-claude", "ok")]
    # The receipt names the API each attempt was carried in when it was not the client's own.
    receipt = requests.get(f"{gateway}/v1/generations/{record.request_id}", timeout=10,
                           headers={"Authorization": f"Bearer {key}"}).json()
    carried = {"messages": ["/v1/chat/completions", None], "chat": [None, "/v1/messages"],
               "responses": [None, "/v1/messages"]}[route]
    assert [a.get("translated_to") for a in receipt["attempts"]] == carried
    assert [a["result"] for a in receipt["attempts"]] == ["status_500", "ok"]
    assert record.upstream_id == catalog.find_upstream("fake-claude").id
    assert (record.status, record.route, record.streamed, record.cost) == ("ok", route, stream, expected)
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_5m_tokens, record.output_tokens) == (
        USAGE.input, USAGE.cache_read, USAGE.cache_write_5m, USAGE.output)
    assert ledger.verify() == []


@pytest.mark.parametrize("route", ["messages", "chat"])
def test_the_openai_upstream_serves_when_it_can(gateway, key, fake, mixed, route):
    fake.next(input=300, cache_read=1024, output=12)
    assert answer(gateway, key, route, stream=True) == "Hello from the fake upstream"
    assert mixed.received == []
    expected = quote(MIXED, Usage(input=300, cache_read=1024, output=12))
    money = balance(gateway, key)
    assert (CREDIT - money["balance_micro_usd"], money["held_micro_usd"]) == (expected, 0)
    [record] = wait_for_records(1)
    assert [a["upstream"] for a in record.attempts] == ["fake-openai"] and record.cost == expected
