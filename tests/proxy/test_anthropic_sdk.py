"""The Anthropic-compatible routes through the official anthropic SDK."""
import pytest
import requests
from anthropic import Anthropic

from portal.pricing import Usage, quote
from tests.proxy.conftest import CLAUDE, CREDIT, ECHO, balance, records


@pytest.fixture
def client(gateway, key):
    with Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=20) as client:
        yield client


def charged(gateway, key) -> int:
    return CREDIT - balance(gateway, key)["balance_micro_usd"]


def test_message_with_every_token_class(client, fake, gateway, key):
    fake.next(input=1834, output=320, cache_read=61234, cache_write=4096)
    # A body big enough for 67,164 input tokens (docs/billing.md, Bounds): a cached system prompt.
    message = client.messages.create(model="claude-test", max_tokens=1000, system="You are terse. " * 5_000,
                                     messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "Hello from the fake upstream"
    expected = quote(CLAUDE, Usage(input=1834, output=320, cache_read=61234, cache_write_5m=4096))
    assert expected == 5502 + 4800 + 18370 + 15360 == 44_032
    assert charged(gateway, key) == expected
    [record] = records()
    assert (record.input_tokens, record.output_tokens, record.cache_read_tokens, record.cache_write_5m_tokens,
            record.cost, record.status) == (1834, 320, 61234, 4096, expected, "ok")


def test_message_stream(client, fake, gateway, key):
    fake.next(input=100, output=12, cache_read=2000)
    with client.messages.stream(model="claude-test", max_tokens=500,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the fake upstream"
    assert final.usage.output_tokens == 12
    assert charged(gateway, key) == quote(CLAUDE, Usage(input=100, output=12, cache_read=2000)) == 1_080


def test_beta_messages_keep_beta_header(client, fake, gateway, key):
    fake.next(input=10, output=5)
    client.beta.messages.create(model="claude-test", max_tokens=50, betas=["interleaved-thinking-2025-05-14"],
                                messages=[{"role": "user", "content": "hi"}])
    assert fake.received[-1].headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert charged(gateway, key) == quote(CLAUDE, Usage(input=10, output=5))


def test_query_string_is_forwarded(fake, gateway, key):
    """Claude Code calls /v1/messages?beta=true."""
    fake.next(input=10, output=5)
    response = requests.post(f"{gateway}/v1/messages?beta=true", headers={"x-api-key": key},
                             json={"model": "claude-test", "max_tokens": 50,
                                   "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert response.status_code == 200
    assert fake.received[-1].path == "/v1/messages?beta=true"


def test_count_tokens_is_not_charged(client, fake, gateway, key):
    fake.next(input=4242)
    result = client.messages.count_tokens(model="claude-test", messages=[{"role": "user", "content": "hi"}])
    assert result.input_tokens == 4242
    assert fake.received[-1].path == "/v1/messages/count_tokens"
    assert charged(gateway, key) == 0
    assert records() == []


def test_echo_model_speaks_anthropic(client, gateway, key):
    message = client.messages.create(model="echo-1", max_tokens=2, messages=[{"role": "user", "content": "a b c"}])
    assert (message.content[0].text, message.stop_reason) == ("Echo: a", "max_tokens")
    with client.messages.stream(model="echo-1", max_tokens=100,
                                messages=[{"role": "user", "content": "a b c"}]) as stream:
        assert "".join(stream.text_stream) == "Echo: a b c"
    assert charged(gateway, key) == quote(ECHO, Usage(input=3, output=2)) + quote(ECHO, Usage(input=3, output=4))


def test_models_list_in_anthropic_shape(client):
    assert sorted(m.id for m in client.models.list()) == ["claude-test", "echo-1", "gpt-test"]


def test_answers_name_the_model_as_called(client, fake):
    """claude-test is served as claude-upstream: the answer says claude-test, as Anthropic would (Claude Code
    keeps a turn's thinking in its history only when the model matches the one it called)."""
    fake.next(input=10, output=5)
    assert client.messages.create(model="claude-test", max_tokens=50,
                                  messages=[{"role": "user", "content": "hi"}]).model == "claude-test"
    fake.next(input=10, output=5)
    with client.messages.stream(model="claude-test", max_tokens=50,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        assert stream.get_final_message().model == "claude-test"
    assert [received.json["model"] for received in fake.received] == ["claude-upstream", "claude-upstream"]
