"""The official openai SDK's chat completions against claude-test, whose upstream speaks Anthropic's Messages.

Each call goes through the gateway to the real fake upstream on loopback; each test checks what
the upstream received, what the SDK made of the answer, and the exact charge: the price quoted
on the usage the upstream reported, read in its own (Messages) format.
"""
import json

import openai
import pytest
import requests
from openai import OpenAI
from pydantic import BaseModel

from portal.pricing import Usage, quote
from tests.fake_upstream import ANTHROPIC_KEY, ToolCall
from tests.proxy.conftest import CLAUDE, CREDIT, balance, records, wait_for_records

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
HI = [{"role": "user", "content": "hi"}]


class Forecast(BaseModel):
    city: str
    degrees: int
    sunny: bool


@pytest.fixture
def client(gateway, key):
    with OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0, timeout=20) as client:
        yield client


def charged(gateway, key) -> int:
    """What the calls so far cost, once settled: no hold is left open."""
    now = balance(gateway, key)
    assert now["held_micro_usd"] == 0
    return CREDIT - now["balance_micro_usd"]


def sent(fake) -> dict:
    """The body the upstream received last."""
    return fake.received[-1].json


def the_record(status: str = "ok"):
    """The one usage record, of a call that ended so (a stream: settled from its own last event)."""
    [record] = records()
    assert record.status == status
    return record


def classes(record) -> Usage:
    return Usage(input=record.input_tokens, cache_read=record.cache_read_tokens,
                 cache_write_5m=record.cache_write_5m_tokens, output=record.output_tokens)


def sdk_usage_matches(usage, record) -> None:
    """The chat usage the SDK saw is the usage charged: the prompt is every input class, the cached
    part the cache reads."""
    prompt = record.input_tokens + record.cache_read_tokens + record.cache_write_5m_tokens
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens, usage.completion_tokens,
            usage.total_tokens) == (prompt, record.cache_read_tokens, record.output_tokens,
                                    prompt + record.output_tokens)


def test_a_completion_with_every_input_class(client, fake, gateway, key):
    fake.next(dialect="anthropic", input=600, cache_read=2000, cache_write=1000, output=30)
    completion = client.chat.completions.create(
        model="claude-test", max_completion_tokens=300, temperature=1.5, stop="END", user="user-42",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    request = fake.received[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == ANTHROPIC_KEY and request.headers["anthropic-version"]
    assert request.json == {"model": "claude-upstream", "max_tokens": 300, "temperature": 1,
                            "stop_sequences": ["END"], "metadata": {"user_id": "user-42"},
                            "system": [{"type": "text", "text": "Be brief."}],
                            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert (completion.object, completion.model, completion.id) == ("chat.completion", "claude-test",
                                                                    "chatcmpl-fake")
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant", "Hello from the fake upstream", "stop")
    expected = quote(CLAUDE, Usage(input=600, cache_read=2000, cache_write_5m=1000, output=30))
    assert expected == 1800 + 600 + 3750 + 450
    assert charged(gateway, key) == expected
    record = the_record()
    assert (classes(record), record.cost, record.route, record.status) == (
        Usage(input=600, cache_read=2000, cache_write_5m=1000, output=30), expected, "chat", "ok")
    sdk_usage_matches(completion.usage, record)


def test_several_turns_and_an_image(client, fake, gateway, key):
    fake.next(dialect="anthropic", input=1500, output=12)
    client.chat.completions.create(model="claude-test", messages=[
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url",
                                      "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert sent(fake)["system"] == [{"type": "text", "text": "Answer in French."}]
    assert sent(fake)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Bonjour"}]},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "iVBORw0KGgo="}}]}]
    assert charged(gateway, key) == quote(CLAUDE, Usage(input=1500, output=12))


def test_a_stream_with_its_usage_chunk(client, fake, gateway, key):
    fake.next(dialect="anthropic", input=400, cache_read=1000, output=9)
    chunks = list(client.chat.completions.create(model="claude-test", messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    expected = quote(CLAUDE, Usage(input=400, cache_read=1000, output=9))
    assert charged(gateway, key) == expected  # settled by the time the last chunk arrived
    assert "stream_options" not in sent(fake) and sent(fake)["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake upstream"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.object == "chat.completion.chunk"
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    record = the_record()
    assert (classes(record), record.streamed) == (Usage(input=400, cache_read=1000, output=9), True)
    sdk_usage_matches(last.usage, record)


def test_a_stream_without_the_usage_chunk_is_still_charged_exactly(client, fake, gateway, key):
    fake.next(dialect="anthropic", input=400, cache_write=512, output=9)
    chunks = list(client.chat.completions.create(model="claude-test", messages=HI, stream=True))
    expected = quote(CLAUDE, Usage(input=400, cache_write_5m=512, output=9))
    assert charged(gateway, key) == expected
    assert all(c.usage is None and c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    record = the_record()
    assert (classes(record), record.usage_estimated) == (Usage(input=400, cache_write_5m=512, output=9), False)


def test_a_streamed_tool_call_reassembled_by_the_sdk_and_its_result_next_turn(client, fake, gateway, key):
    arguments = {"city": "Paris", "unit": "celsius"}
    fake.next(dialect="anthropic", input=800, output=40, text="Checking.",
              tool_calls=[ToolCall("get_weather", arguments, id="toolu_01A")], fragment=2)
    question = {"role": "user", "content": "Weather in Paris?"}
    with client.chat.completions.stream(model="claude-test", messages=[question], tools=[WEATHER],
                                        tool_choice="required") as stream:
        events = list(stream)
        final = stream.get_final_completion()
    first = quote(CLAUDE, Usage(input=800, output=40))
    assert charged(gateway, key) == first
    assert sent(fake)["tools"] == [{"name": "get_weather", "description": "The weather in a city.",
                                    "input_schema": WEATHER["function"]["parameters"]}]
    assert sent(fake)["tool_choice"] == {"type": "any"}
    pieces = [e.arguments_delta for e in events
              if e.type == "tool_calls.function.arguments.delta" and e.arguments_delta]
    assert len(pieces) == len(json.dumps(arguments)) // 2 and "".join(pieces) == json.dumps(arguments)
    choice = final.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("tool_calls", "Checking.")
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name, json.loads(call.function.arguments)) == (
        "toolu_01A", "function", "get_weather", arguments)

    fake.next(dialect="anthropic", input=900, output=10, text="It is 18C.")
    answer = client.chat.completions.create(model="claude-test", tools=[WEATHER], messages=[
        question, {"role": "assistant", "content": "Checking.",
                   "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C, sunny"}])
    assert sent(fake)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
                                           "input": arguments}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C, sunny"}]}]
    assert answer.choices[0].message.content == "It is 18C."
    assert charged(gateway, key) == first + quote(CLAUDE, Usage(input=900, output=10))


def test_tool_calls_accumulated_by_hand(client, fake, gateway, key):
    """Two calls in a row, as a client that reads raw chunks sees them: by index, arguments in pieces."""
    fake.next(dialect="anthropic", input=300, output=50, text="",
              tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="toolu_1"),
                          ToolCall("get_weather", {"city": "Rome"}, id="toolu_2")])
    calls: dict = {}
    finish = None
    for chunk in client.chat.completions.create(model="claude-test", messages=HI, tools=[WEATHER], stream=True,
                                                stream_options={"include_usage": True}):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls"
    assert calls == {0: {"id": "toolu_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
                     1: {"id": "toolu_2", "name": "get_weather", "arguments": '{"city": "Rome"}'}}
    assert charged(gateway, key) == quote(CLAUDE, Usage(input=300, output=50))


def test_a_json_schema_answer_parsed_by_the_sdk(client, fake, gateway, key):
    forecast = {"city": "Paris", "degrees": 18, "sunny": True}
    fake.next(dialect="anthropic", input=350, output=22, text="", tool_calls=[ToolCall("json_answer", forecast)])
    completion = client.chat.completions.parse(model="claude-test", messages=HI, response_format=Forecast)
    request = sent(fake)
    assert [t["name"] for t in request["tools"]] == ["json_answer"]
    assert request["tools"][0]["input_schema"]["required"] == ["city", "degrees", "sunny"]
    assert request["tool_choice"] == {"type": "tool", "name": "json_answer"}
    message = completion.choices[0].message
    assert (completion.choices[0].finish_reason, json.loads(message.content)) == ("stop", forecast)
    assert message.parsed == Forecast(**forecast) and not message.tool_calls
    assert charged(gateway, key) == quote(CLAUDE, Usage(input=350, output=22))


def test_a_streamed_json_schema_answer(client, fake, gateway, key):
    forecast = {"city": "Oslo", "degrees": -3, "sunny": False}
    fake.next(dialect="anthropic", input=350, output=22, text="", tool_calls=[ToolCall("json_answer", forecast)])
    with client.chat.completions.stream(model="claude-test", messages=HI, response_format=Forecast) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == Forecast(**forecast)
    assert final.choices[0].finish_reason == "stop"
    assert charged(gateway, key) == quote(CLAUDE, Usage(input=350, output=22))


@pytest.mark.parametrize("refused", [{"n": 2}, {"logprobs": True}, {"logprobs": True, "top_logprobs": 3}],
                         ids=["n", "logprobs", "top_logprobs"])
def test_what_the_upstream_cannot_do_is_refused_before_any_hold(client, fake, gateway, key, refused):
    with pytest.raises(openai.BadRequestError) as failed:
        client.chat.completions.create(model="claude-test", messages=HI, **refused)
    assert failed.value.status_code == 400
    assert failed.value.code == "unsupported_by_upstream"
    assert failed.value.type == "invalid_request_error"
    body = failed.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert fake.received == []
    assert balance(gateway, key)["held_micro_usd"] == 0 and charged(gateway, key) == 0
    assert records() == []  # refused before the hold: nothing to record


@pytest.mark.parametrize("status, error, answered, kind", [
    (400, openai.BadRequestError, 400, "invalid_request_error"),
    (429, openai.RateLimitError, 429, "rate_limit_error"),
    (500, openai.InternalServerError, 502, "upstream_error")])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_upstream_errors_come_back_in_openais_shape(client, fake, gateway, key, status, error, answered, kind,
                                                    stream):
    fake.next(status=status, error_message="prompt is too long: 210000 tokens > 200000 maximum")
    with pytest.raises(error) as failed:
        client.chat.completions.create(model="claude-test", messages=HI, stream=stream)
    body = failed.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert (failed.value.status_code, body["error"]["type"]) == (answered, kind)
    assert "prompt is too long" in body["error"]["message"]
    assert fake.received[-1].path == "/v1/messages"
    assert charged(gateway, key) == 0
    record = the_record("upstream_error")
    assert (record.http_status, record.cost) == (status, 0)


def test_an_error_event_mid_stream_becomes_an_openai_error_chunk(client, fake, gateway, key):
    # message_start, the text block's start, its first delta, then Anthropic's `event: error`.
    fake.next(dialect="anthropic", input=250, output=9, error_event_after=3)
    seen = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in client.chat.completions.create(model="claude-test", messages=HI, stream=True):
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "Hello"]
    assert failed.value.message == "bad key [redacted]"  # the provider's message, its key scrubbed
    assert failed.value.body == {"message": "bad key [redacted]", "type": "overloaded_error", "param": None,
                                 "code": None}
    [record] = wait_for_records(1)
    # Cut short after output: the input message_start reported plus the output relayed, estimated.
    assert (record.status, record.usage_estimated, record.input_tokens) == ("upstream_truncated", True, 250)
    assert record.cost == quote(CLAUDE, classes(record)) > 0
    assert charged(gateway, key) == record.cost


def test_the_error_chunk_on_the_wire(fake, gateway, key):
    fake.next(dialect="anthropic", error_event_after=3)
    response = requests.post(f"{gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                             json={"model": "claude-test", "stream": True, "messages": HI}, timeout=20)
    events = [json.loads(line.removeprefix("data: ")) for line in response.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert "event:" not in response.text  # chat streams name no events
    assert [e["choices"][0]["delta"] for e in events[:2]] == [{"role": "assistant", "content": ""},
                                                              {"content": "Hello"}]
    assert events[2] == {"error": {"message": "bad key [redacted]", "type": "overloaded_error", "param": None,
                                   "code": None}}
    # The upstream's stream then ended without its last event: the gateway says so too (a client stops at the first).
    assert events[3]["error"]["code"] == "bad_gateway" and len(events) == 4
    assert ANTHROPIC_KEY not in response.text
    wait_for_records(1)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_reasoning_effort_asks_for_thinking_which_comes_back_as_reasoning_content(client, fake, gateway, key,
                                                                                  stream):
    fake.next(dialect="anthropic", input=80, output=20, reasoning=300, thinking="Greet back, briefly.")
    request = dict(model="claude-test", messages=HI, reasoning_effort="medium", max_completion_tokens=8000,
                   temperature=0.3)
    if stream:
        chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        thought = "".join((d.model_extra or {}).get("reasoning_content", "") for d in deltas)
        text = "".join(d.content or "" for d in deltas)
        usage = chunks[-1].usage
    else:
        message = client.chat.completions.create(**request)
        thought, text, usage = (message.choices[0].message.model_extra["reasoning_content"],
                                message.choices[0].message.content, message.usage)
    assert sent(fake)["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert "temperature" not in sent(fake)  # thinking takes only the default temperature
    assert (thought, text) == ("Greet back, briefly.", "Hello from the fake upstream")
    # Anthropic counts thinking inside output_tokens: charged as output, and so reported.
    expected = quote(CLAUDE, Usage(input=80, output=320))
    assert charged(gateway, key) == expected
    record = the_record()
    assert classes(record) == Usage(input=80, output=320)
    sdk_usage_matches(usage, record)
