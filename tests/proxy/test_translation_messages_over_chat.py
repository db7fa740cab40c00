"""The official anthropic SDK against gpt-test, whose upstream speaks OpenAI chat completions.

Each call goes through the gateway to the real fake upstream on loopback; each test checks what
the upstream received, what the SDK made of the answer, and the exact charge: the price quoted
on the usage the upstream reported, read in its own (chat) format.
"""
import base64
import hashlib
import json

import anthropic
import pytest
import requests
from anthropic import Anthropic

from portal import catalog
from portal.database import atomic
from portal.pricing import Price, Usage, quote
from proxy.translate import count
from tests.fake_upstream import OPENAI_KEY, ToolCall
from tests.proxy.conftest import CREDIT, GPT, balance, records, wait_for_records

DEEPSEEK = Price(input=270_000, output=1_100_000, cache_read=70_000)
WEATHER = {"name": "get_weather", "description": "The weather in a city, today and the next days.",
           "input_schema": {"type": "object", "required": ["city"],
                            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]},
                                           "days": {"type": "array", "items": {"type": "integer"}}}}}
# A 1x1 transparent PNG.
PIXEL = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")).decode()


@pytest.fixture
def client(gateway, key):
    with Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=20) as client:
        yield client


@pytest.fixture
def openai_dialect(app, catalog_ready):
    """fake-openai read as OpenAI itself (its loopback address makes it generic-openai by default)."""
    with atomic():
        catalog.update_upstream("fake-openai", dialect="openai")


@pytest.fixture
def deepseek(app, catalog_ready, fake):
    """deepseek-test: a DeepSeek upstream (chat only, reasoning as reasoning_content)."""
    with atomic():
        catalog.add_upstream("fake-deepseek", "openai", fake.url + "/v1", OPENAI_KEY, dialect="deepseek",
                             allow_private_host=True)
        catalog.set_model("deepseek-test", "fake-deepseek", DEEPSEEK, upstream_model="deepseek-reasoner",
                          max_output_tokens=4096)


def charged(gateway, key) -> int:
    """What the calls so far cost, once settled: no hold is left open."""
    now = balance(gateway, key)
    assert now["held_micro_usd"] == 0
    return CREDIT - now["balance_micro_usd"]


def the_record(status: str = "ok"):
    """The one usage record, of a call that ended so (a stream: settled from its own last event)."""
    [record] = records()
    assert record.status == status
    return record


def classes(record) -> Usage:
    return Usage(input=record.input_tokens, cache_read=record.cache_read_tokens, output=record.output_tokens,
                 reasoning=record.reasoning_tokens)


def sent(fake) -> dict:
    """The body the upstream received last."""
    return fake.received[-1].json


def sdk_usage_matches(usage, record) -> None:
    """The Anthropic usage the SDK saw is the usage charged, class by class."""
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens,
            usage.output_tokens) == (record.input_tokens, record.cache_read_tokens, 0,
                                     record.output_tokens + record.reasoning_tokens)


def test_a_message_with_a_system_prompt(client, fake, gateway, key):
    fake.next(input=900, cache_read=2048, output=40)
    message = client.messages.create(model="gpt-test", max_tokens=300, system="Be brief.",
                                     extra_body={"temperature": 0.5, "top_p": 0.9},  # no longer SDK arguments
                                     messages=[{"role": "user", "content": "hi"}])
    request = fake.received[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.json == {"model": "gpt-upstream", "max_tokens": 300, "temperature": 0.5, "top_p": 0.9,
                            "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "hi"}]}
    assert (message.type, message.role, message.model, message.stop_reason) == ("message", "assistant", "gpt-test",
                                                                                "end_turn")
    assert [(b.type, b.text) for b in message.content] == [("text", "Hello from the fake upstream")]
    expected = quote(GPT, Usage(input=900, cache_read=2048, output=40))
    assert expected == 1800 + 1024 + 320
    assert charged(gateway, key) == expected
    record = the_record()
    assert (classes(record), record.cost, record.status, record.route) == (
        Usage(input=900, cache_read=2048, output=40), expected, "ok", "messages")
    sdk_usage_matches(message.usage, record)


def test_a_streamed_message_is_anthropics_event_sequence(client, fake, gateway, key):
    fake.next(input=120, cache_read=64, output=9)
    stream = client.messages.create(model="gpt-test", max_tokens=200, stream=True,
                                    messages=[{"role": "user", "content": "hi"}])
    events = list(stream)
    assert charged(gateway, key) == quote(GPT, Usage(input=120, cache_read=64, output=9))  # settled already
    assert sent(fake)["stream"] is True and sent(fake)["stream_options"] == {"include_usage": True}
    assert [e.type for e in events] == ["message_start", "content_block_start", *["content_block_delta"] * 5,
                                        "content_block_stop", "message_delta", "message_stop"]
    assert events[1].content_block.type == "text"
    assert "".join(e.delta.text for e in events[2:7]) == "Hello from the fake upstream"
    assert events[-2].delta.stop_reason == "end_turn"
    record = the_record()
    assert (classes(record), record.streamed) == (Usage(input=120, cache_read=64, output=9), True)
    sdk_usage_matches(events[-2].usage, record)


def test_the_sdks_stream_helper_accumulates_the_message(client, fake, gateway, key):
    fake.next(input=300, output=6)
    with client.messages.stream(model="gpt-test", max_tokens=200,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert charged(gateway, key) == quote(GPT, Usage(input=300, output=6))
    assert text == final.content[0].text == "Hello from the fake upstream"
    sdk_usage_matches(final.usage, the_record())


def test_system_blocks_with_cache_control_and_several_turns(client, fake, gateway, key):
    fake.next(input=500, cache_read=2048, output=20)
    message = client.messages.create(
        model="gpt-test", max_tokens=100,
        system=[{"type": "text", "text": "You are a coding assistant."},
                {"type": "text", "text": "Project rules: be terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "4."},
                  {"role": "user", "content": [{"type": "text", "text": "And 3+3?",
                                                "cache_control": {"type": "ephemeral"}}]}])
    assert sent(fake)["messages"] == [
        {"role": "system", "content": "You are a coding assistant.\nProject rules: be terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"}]
    assert charged(gateway, key) == quote(GPT, Usage(input=500, cache_read=2048, output=20))
    sdk_usage_matches(message.usage, the_record())


def test_an_image_reaches_the_upstream_as_a_data_url(client, fake, gateway, key):
    fake.next(input=1200, output=15)
    client.messages.create(model="gpt-test", max_tokens=100, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
        {"type": "text", "text": "What is in this image?"}]}])
    assert sent(fake)["messages"] == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
        {"type": "text", "text": "What is in this image?"}]}]
    assert charged(gateway, key) == quote(GPT, Usage(input=1200, output=15))


def test_a_streamed_tool_call_and_its_result_next_turn(client, fake, gateway, key):
    arguments = {"city": "Paris", "unit": "celsius", "days": [1, 2, 3]}
    fake.next(input=700, output=45, text="Let me check.",
              tool_calls=[ToolCall("get_weather", arguments, id="call_Wx9")], fragment=3)
    question = {"role": "user", "content": "Weather in Paris?"}
    with client.messages.stream(model="gpt-test", max_tokens=500, tools=[WEATHER], tool_choice={"type": "auto"},
                                messages=[question]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    first = quote(GPT, Usage(input=700, output=45))
    assert charged(gateway, key) == first
    assert sent(fake)["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["input_schema"], "description": WEATHER["description"]}}]
    assert sent(fake)["tool_choice"] == "auto"
    fragments = [e.partial_json for e in events if e.type == "input_json"]
    assert len(fragments) == len(json.dumps(arguments)) // 3 + 1 and "".join(fragments) == json.dumps(arguments)
    assert final.stop_reason == "tool_use"
    text, call = final.content
    assert (text.type, text.text) == ("text", "Let me check.")
    assert (call.type, call.id, call.name, call.input) == ("tool_use", "call_Wx9", "get_weather", arguments)

    fake.next(input=760, output=12, text="18 degrees and sunny.")
    answer = client.messages.create(model="gpt-test", max_tokens=500, tools=[WEATHER], messages=[
        question, {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_Wx9", "content": "18C, sunny"}]}])
    assert sent(fake)["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_Wx9", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps(arguments)}}]},
        {"role": "tool", "tool_call_id": "call_Wx9", "content": "18C, sunny"}]
    assert answer.content[0].text == "18 degrees and sunny."
    assert charged(gateway, key) == first + quote(GPT, Usage(input=760, output=12))


def test_a_tool_call_without_streaming(client, fake, gateway, key):
    fake.next(input=400, output=30, text="", tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="call_1"),
                                                        ToolCall("get_weather", {"city": "Rome"}, id="call_2")])
    message = client.messages.create(model="gpt-test", max_tokens=500, tools=[WEATHER],
                                     tool_choice={"type": "tool", "name": "get_weather"},
                                     messages=[{"role": "user", "content": "Weather in Oslo and Rome?"}])
    assert sent(fake)["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert message.stop_reason == "tool_use"
    assert [(b.type, b.id, b.input) for b in message.content] == [("tool_use", "call_1", {"city": "Oslo"}),
                                                                  ("tool_use", "call_2", {"city": "Rome"})]
    assert charged(gateway, key) == quote(GPT, Usage(input=400, output=30))


def test_stop_sequences_become_stop(client, fake, gateway, key):
    fake.next(input=50, output=4)
    client.messages.create(model="gpt-test", max_tokens=100, stop_sequences=["END", "\n\nHuman:"],
                           messages=[{"role": "user", "content": "count"}])
    assert sent(fake)["stop"] == ["END", "\n\nHuman:"]
    assert charged(gateway, key) == quote(GPT, Usage(input=50, output=4))


@pytest.mark.parametrize("finish, stop_reason", [("length", "max_tokens"), ("tool_calls", "tool_use"),
                                                 ("content_filter", "refusal"), ("stop", "end_turn")])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_stop_reasons(client, fake, gateway, key, finish, stop_reason, stream):
    fake.next(input=30, output=8, finish=finish)
    request = dict(model="gpt-test", max_tokens=8, messages=[{"role": "user", "content": "go on"}])
    if stream:
        with client.messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**request)
    assert message.stop_reason == stop_reason
    assert charged(gateway, key) == quote(GPT, Usage(input=30, output=8))


def test_thinking_asks_an_openai_upstream_for_reasoning_effort(client, fake, gateway, key, openai_dialect):
    fake.next(input=80, output=25, reasoning=600, thinking="The user greets me. I should greet back.")
    message = client.messages.create(model="gpt-test", max_tokens=2000,
                                     thinking={"type": "enabled", "budget_tokens": 1024},
                                     messages=[{"role": "user", "content": "hi"}])
    assert (sent(fake)["reasoning_effort"], sent(fake)["max_completion_tokens"]) == ("low", 2000)
    thinking, text = message.content
    assert (thinking.type, thinking.thinking) == ("thinking", "The user greets me. I should greet back.")
    assert text.text == "Hello from the fake upstream"
    expected = quote(GPT, Usage(input=80, output=25, reasoning=600))
    assert expected == 160 + 200 + 4800
    assert charged(gateway, key) == expected
    record = the_record()
    assert classes(record) == Usage(input=80, output=25, reasoning=600)
    sdk_usage_matches(message.usage, record)


@pytest.mark.parametrize("budget, effort", [(8000, "medium"), (20000, "high")])
def test_bigger_thinking_budgets_ask_for_more_effort(client, fake, gateway, key, budget, effort):
    fake.next(input=80, output=25)
    with client.messages.stream(model="gpt-test", max_tokens=budget + 100, messages=[{"role": "user", "content": "hi"}],
                                thinking={"type": "enabled", "budget_tokens": budget}) as stream:
        stream.get_final_message()
    assert sent(fake)["reasoning_effort"] == effort
    assert sent(fake)["max_tokens"] == 4096  # gpt-test's most output
    assert charged(gateway, key) == quote(GPT, Usage(input=80, output=25))


def test_deepseek_reasoning_content_streams_back_as_a_thinking_block(client, fake, gateway, key, deepseek):
    fake.next(dialect="deepseek", input=64, cache_read=1024, output=10, reasoning=90,
              thinking="Two and two make four.", text="It is 4.")
    with client.messages.stream(model="deepseek-test", max_tokens=1000,
                                thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "2+2?"}]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    expected = quote(DEEPSEEK, Usage(input=64, cache_read=1024, output=10, reasoning=90))
    assert charged(gateway, key) == expected
    request = fake.received[-1]
    assert request.json["model"] == "deepseek-reasoner" and request.json["max_tokens"] == 1000
    assert "reasoning_effort" not in request.json  # DeepSeek's reasoner thinks by itself
    assert [e.type for e in events if e.type in ("content_block_start", "content_block_stop")] == [
        "content_block_start", "content_block_stop"] * 2
    thinking, text = final.content
    assert (thinking.type, thinking.thinking, text.text) == ("thinking", "Two and two make four.", "It is 4.")
    record = the_record()
    assert classes(record) == Usage(input=64, cache_read=1024, output=10, reasoning=90)
    sdk_usage_matches(final.usage, record)


def test_deepseek_reasoning_content_in_a_complete_answer(client, fake, gateway, key, deepseek):
    fake.next(dialect="deepseek", input=64, output=10, reasoning=90, thinking="Simple sum.", text="4")
    message = client.messages.create(model="deepseek-test", max_tokens=1000,
                                     messages=[{"role": "user", "content": "2+2?"}])
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in message.content] == [
        ("thinking", "Simple sum."), ("text", "4")]
    assert charged(gateway, key) == quote(DEEPSEEK, Usage(input=64, output=10, reasoning=90))
    sdk_usage_matches(message.usage, the_record())


def test_beta_headers_and_the_beta_query_stay_behind(client, fake, gateway, key):
    fake.next(input=10, output=5)
    client.beta.messages.create(model="gpt-test", max_tokens=50, extra_query={"beta": "true"},
                                betas=["interleaved-thinking-2025-05-14", "claude-code-20250219"],
                                messages=[{"role": "user", "content": "hi"}])
    request = fake.received[-1]
    assert request.path == "/v1/chat/completions"
    assert not [name for name in request.headers if name.startswith(("anthropic-", "x-api-key", "x-stainless"))]
    assert charged(gateway, key) == quote(GPT, Usage(input=10, output=5))


def test_count_tokens_is_a_local_estimate_that_costs_nothing(client, fake, gateway, key):
    document = {"model": "gpt-test", "system": "Be brief.", "tools": [WEATHER],
                "messages": [{"role": "user", "content": "What is the weather in 東京 today?"}]}
    raw = client.messages.with_raw_response.count_tokens(**document)
    assert raw.headers["x-token-count"] == "estimated"
    result = raw.parse()
    assert result.input_tokens == count.estimate(document) > 0
    assert result.model_extra == {"estimated": True}
    assert fake.received == []  # the upstream has no count_tokens: nothing was asked of it
    assert charged(gateway, key) == 0
    assert records() == []


def claude_code_body(tools: int = 24) -> dict:
    """A request shaped like Claude Code's first turn (a capture of claude-cli 2.1): system blocks with
    cache_control, many tools with long descriptions, a reminder, a mid-conversation system message,
    adaptive thinking, context management and an effort setting, streamed."""
    def tool(number: int) -> dict:
        return {"name": f"Tool{number}",
                "description": f"Tool {number} does one kind of work for the agent. "
                               + "Usage notes: be careful. " * 110,
                "input_schema": {"type": "object", "$schema": "http://json-schema.org/draft-07/schema#",
                                 "additionalProperties": False, "required": ["command"],
                                 "properties": {"command": {"type": "string", "description": "What to run. " * 20},
                                                "timeout": {"type": "number", "description": "Milliseconds."}}}}
    return {
        "model": "gpt-test", "max_tokens": 32000, "stream": True,
        "metadata": {"user_id": json.dumps({"device_id": "7bf3adc9" * 8, "account_uuid": "", "session_id": "0579"})},
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cc_entrypoint=sdk-cli;"},
                   {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                    "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "You are an interactive CLI tool. " * 170,
                    "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
                        {"type": "text", "text": "<system-reminder>\nToday's date is 2026-11-28.\n</system-reminder>"},
                        {"type": "text", "text": "say hi", "cache_control": {"type": "ephemeral"}}]},
                     {"role": "system", "content": "Available agent types for the Agent tool: general-purpose."}],
        "tools": [tool(n) for n in range(tools)],
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"}}


def test_a_claude_code_sized_request(fake, gateway, key):
    body = claude_code_body()
    raw = json.dumps(body).encode()
    assert len(raw) > 70_000
    fake.next(input=17_000, cache_read=2_000, output=11, text="Hi!")
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json",
               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"}
    with requests.post(f"{gateway}/v1/messages?beta=true", data=raw, headers=headers, stream=True,
                       timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        names = [line.removeprefix(b"event: ").decode() for line in response.iter_lines()
                 if line.startswith(b"event: ")]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    expected = quote(GPT, Usage(input=17_000, cache_read=2_000, output=11))
    assert charged(gateway, key) == expected
    request = fake.received[-1]
    assert request.path == "/v1/chat/completions" and "anthropic-beta" not in request.headers
    upstream = request.json
    assert [t["function"]["name"] for t in upstream["tools"]] == [f"Tool{n}" for n in range(24)]
    assert upstream["max_tokens"] == 4096
    assert [m["role"] for m in upstream["messages"]] == ["system", "user", "system"]
    # Longer than OpenAI's 64 characters: a stable digest of it.
    digest = hashlib.sha256(body["metadata"]["user_id"].encode()).hexdigest()
    assert upstream["user"] == "sha256:" + digest[:57] and len(upstream["user"]) == 64
    record = the_record()
    assert (classes(record), record.cost, record.usage_clamped) == (
        Usage(input=17_000, cache_read=2_000, output=11), expected, False)


@pytest.mark.parametrize("status, error, answered, kind", [
    (400, anthropic.BadRequestError, 400, "invalid_request_error"),
    (429, anthropic.RateLimitError, 429, "rate_limit_error"),
    (500, anthropic.InternalServerError, 502, "api_error")])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_upstream_errors_come_back_in_anthropics_shape(client, fake, gateway, key, status, error, answered, kind,
                                                       stream):
    fake.next(status=status, error_message="This model's maximum context length is 128000 tokens.")
    with pytest.raises(error) as failed:
        client.messages.create(model="gpt-test", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                               stream=stream)
    body = failed.value.response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert (failed.value.status_code, body["error"]["type"]) == (answered, kind)
    assert "maximum context length" in body["error"]["message"]
    assert charged(gateway, key) == 0
    record = the_record("upstream_error")
    assert (record.http_status, record.cost) == (status, 0)


def test_an_error_mid_stream_becomes_an_anthropic_error_event(client, fake, gateway, key):
    # The role chunk, two text deltas, then the provider gives up with an error (its key in it).
    fake.next(input=250, output=9, error_event_after=3)
    seen = []
    with pytest.raises(anthropic.APIStatusError) as failed:
        for event in client.messages.create(model="gpt-test", max_tokens=100, stream=True,
                                            messages=[{"role": "user", "content": "hi"}]):
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta", "content_block_delta"]
    # The provider's error type is one of Anthropic's: it is kept (another would read api_error).
    assert failed.value.body == {"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "bad key [redacted]"}}
    [record] = wait_for_records(1)
    # Cut short after output: the input estimated from the body plus the output relayed.
    assert (record.status, record.usage_estimated) == ("upstream_truncated", True)
    assert record.cost == quote(GPT, classes(record)) > 0
    assert charged(gateway, key) == record.cost
