"""Through the gateway: each way a stream reports (or does not report) its usage is charged right."""
import json

import pytest
import requests

from portal import ledger
from portal.pricing import Usage, quote
from tests.proxy.conftest import CLAUDE, CREDIT, GPT, balance, wait_for_records

RESPONSES_BODY = {"model": "gpt-test", "max_output_tokens": 1000, "input": "hi", "stream": True}
MESSAGES_BODY = {"model": "claude-test", "max_tokens": 1000, "stream": True,
                 "messages": [{"role": "user", "content": "hi"}]}


def stream(gateway, key, path, body) -> bytes:
    response = requests.post(f"{gateway}{path}", data=json.dumps(body), stream=True, timeout=10,
                             headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})
    assert response.status_code == 200, response.text
    return response.content


def assert_charged(gateway, key, record, price, usage):
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_5m_tokens, record.output_tokens) \
        == (usage.input, usage.cache_read, usage.cache_write_5m, usage.output)
    assert record.cost == quote(price, usage) > 0
    money = balance(gateway, key)
    assert (money["balance_micro_usd"], money["held_micro_usd"]) == (CREDIT - record.cost, 0)
    assert ledger.verify() == []


@pytest.mark.parametrize("final_event", ["response.completed", "response.incomplete", "response.failed"])
def test_a_responses_stream_is_charged_the_usage_its_last_event_reports(gateway, fake, key, final_event):
    """`response.incomplete` is how a Responses stream ends at max_output_tokens: what it reports was used."""
    fake.next(final_event=final_event, input=300, cache_read=100, output=250)
    content = stream(gateway, key, "/v1/responses", RESPONSES_BODY)
    assert f"event: {final_event}".encode() in content
    [record] = wait_for_records(1)
    assert record.usage_estimated is False
    assert_charged(gateway, key, record, GPT, Usage(input=300, cache_read=100, output=250))


def test_message_delta_input_figures_override_message_start(gateway, fake, key):
    fake.next(input=11, cache_read=5, cache_write=6, delta_input=(700, 50, 60), output=90)
    stream(gateway, key, "/v1/messages", MESSAGES_BODY)
    [record] = wait_for_records(1)
    assert (record.status, record.usage_estimated) == ("ok", False)
    assert_charged(gateway, key, record, CLAUDE, Usage(input=700, cache_read=50, cache_write_5m=60, output=90))


def test_a_stream_without_usage_is_charged_at_least_a_token_per_delta(gateway, fake, key):
    # 40 one-letter words arrive as "a", " a", " a", ...: 79 characters would be 20 tokens at four
    # characters a token, but 40 deltas are at least 40 tokens.
    fake.next(omit_usage=True, text=" ".join(["a"] * 40))
    stream(gateway, key, "/v1/messages", MESSAGES_BODY)
    [record] = wait_for_records(1)
    assert (record.usage_estimated, record.output_tokens) == (True, 40)
    assert record.input_tokens > 0
    assert_charged(gateway, key, record, CLAUDE, Usage(input=record.input_tokens, output=40))
