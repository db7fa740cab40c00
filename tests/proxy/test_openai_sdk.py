"""Every OpenAI-compatible route through the official openai SDK, each charge checked to the micro-dollar."""

import pytest
from openai import OpenAI

from portal.pricing import Usage, quote
from tests.proxy.conftest import CREDIT, ECHO, GPT, balance, records, wait_for_records


@pytest.fixture
def client(gateway, key):
    with OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=20) as client:
        yield client


def charged(gateway, key) -> int:
    return CREDIT - balance(gateway, key)["balance_micro_usd"]


def test_chat_completion(client, fake, gateway, key):
    fake.next(input=1200, cache_read=300, output=57)
    reply = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}],
                                           max_completion_tokens=100)
    assert reply.choices[0].message.content == "Hello from the fake upstream"
    expected = quote(GPT, Usage(input=1200, cache_read=300, output=57))
    assert charged(gateway, key) == expected == 3_006
    [record] = records()
    assert (record.status, record.cost, record.input_tokens, record.cache_read_tokens, record.output_tokens,
            record.usage_estimated, record.route, record.streamed) == ("ok", expected, 1200, 300, 57, False,
                                                                       "chat", False)
    assert balance(gateway, key)["held_micro_usd"] == 0


@pytest.mark.parametrize("client_asks_for_usage", [False, True])
def test_chat_stream(client, fake, gateway, key, client_asks_for_usage):
    fake.next(input=40, output=6)
    extra = {"stream_options": {"include_usage": True}} if client_asks_for_usage else {}
    chunks = list(client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, **extra))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream"
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == (1 if client_asks_for_usage else 0)
    # The gateway asked the upstream for usage either way, so it could bill the call.
    assert fake.received[-1].json["stream_options"] == {"include_usage": True}
    assert charged(gateway, key) == quote(GPT, Usage(input=40, output=6)) == 128


def test_responses(client, fake, gateway, key):
    fake.next(input=500, cache_read=1000, output=250)
    response = client.responses.create(model="gpt-test", input="hello", max_output_tokens=300)
    assert response.output_text == "Hello from the fake upstream"
    assert charged(gateway, key) == quote(GPT, Usage(input=500, cache_read=1000, output=250)) == 3_500


def test_responses_stream(client, fake, gateway, key):
    fake.next(input=500, output=9)
    events = list(client.responses.create(model="gpt-test", input="hello", stream=True))
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
        "Hello from the fake upstream"
    assert charged(gateway, key) == quote(GPT, Usage(input=500, output=9)) == 1_072


def test_embeddings(client, fake, gateway, key):
    fake.next(input=123_456)
    long_text = "one " * 31_000  # 124,000 bytes: enough body for 123,456 tokens (docs/billing.md, Bounds)
    result = client.embeddings.create(model="gpt-test", input=[long_text, "two"], encoding_format="float")
    assert [d.embedding for d in result.data] == [[0.5, -0.25, 0.125]] * 2
    assert charged(gateway, key) == quote(GPT, Usage(input=123_456)) == 246_912
    [record] = records()
    assert (record.route, record.input_tokens, record.output_tokens) == ("embeddings", 123_456, 0)


def test_models_lists_enabled_models(client):
    assert sorted(m.id for m in client.models.list()) == ["claude-test", "echo-1", "gpt-test"]


@pytest.mark.parametrize("stream", [False, True])
def test_echo_model_offline(client, gateway, key, stream):
    """The demo model: deterministic reply and usage, exact charge, no network."""
    kwargs = {"model": "echo-1", "messages": [{"role": "user", "content": "one two three"}]}
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs)
                       if c.choices)
    else:
        text = client.chat.completions.create(**kwargs).choices[0].message.content
    assert text == "Echo: one two three"
    # input: 3 words; output: 4 words
    assert charged(gateway, key) == quote(ECHO, Usage(input=3, output=4)) == 48
    [record] = wait_for_records(1)
    assert (record.input_tokens, record.output_tokens, record.streamed) == (3, 4, stream)


def test_echo_embeddings_and_responses(client, gateway, key):
    vectors = client.embeddings.create(model="echo-1", input="some words here")
    assert len(vectors.data[0].embedding) == 8
    response = client.responses.create(model="echo-1", input="ping pong")
    assert response.output_text == "Echo: ping pong"
    streamed = list(client.responses.create(model="echo-1", input="ping pong", stream=True))
    assert streamed[-1].response.usage.output_tokens == 3
    assert charged(gateway, key) == (quote(ECHO, Usage(input=3)) + 2 * quote(ECHO, Usage(input=2, output=3)))
