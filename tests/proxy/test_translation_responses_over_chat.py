"""The official openai SDK's Responses API against upstreams that speak only chat completions, and
against an Anthropic upstream (Responses over chat over Messages).

A DeepSeek upstream is chat-only by its dialect, a generic one because the operator marked it so;
an OpenAI upstream not so marked still gets /v1/responses as it is. Each test checks what the
upstream received, what the SDK made of the answer, and the exact charge.
"""
import json

import openai
import pytest
from openai import OpenAI

from portal import catalog
from portal.database import atomic
from portal.pricing import Price, Usage, quote
from tests.fake_upstream import OPENAI_KEY, ToolCall
from tests.proxy.conftest import CLAUDE, CREDIT, GPT, balance, records

DEEPSEEK = Price(input=270_000, output=1_100_000, cache_read=70_000)
PLAIN = Price(input=1_000_000, output=4_000_000, cache_read=250_000)
PRICES = {"deepseek-test": DEEPSEEK, "chatonly-test": PLAIN}
DIALECTS = {"deepseek-test": "deepseek", "chatonly-test": "openai"}
UPSTREAM_MODELS = {"deepseek-test": "deepseek-chat", "chatonly-test": "plain-chat"}
CHAT_ONLY = pytest.mark.parametrize("model", ["deepseek-test", "chatonly-test"])
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}
TEXT_EVENTS = ["response.output_item.added", "response.content_part.added", *["response.output_text.delta"] * 5,
               "response.output_text.done", "response.content_part.done", "response.output_item.done"]


@pytest.fixture
def client(gateway, key, chat_only):
    with OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0, timeout=20) as client:
        yield client


@pytest.fixture
def chat_only(app, catalog_ready, fake):
    """deepseek-test (chat-only by its dialect) and chatonly-test (a generic upstream marked chat-only)."""
    with atomic():
        catalog.add_upstream("fake-deepseek", "openai", fake.url + "/v1", OPENAI_KEY, dialect="deepseek",
                             allow_private_host=True)
        catalog.add_upstream("fake-chat-only", "openai", fake.url + "/v1", OPENAI_KEY, chat_only=True,
                             allow_private_host=True)
        catalog.set_model("deepseek-test", "fake-deepseek", DEEPSEEK, upstream_model="deepseek-chat",
                          max_output_tokens=4096)
        catalog.set_model("chatonly-test", "fake-chat-only", PLAIN, upstream_model="plain-chat",
                          max_output_tokens=4096)


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
                 cache_write_5m=record.cache_write_5m_tokens, output=record.output_tokens,
                 reasoning=record.reasoning_tokens)


def sdk_usage_matches(usage, record) -> None:
    """The Responses usage the SDK saw is the usage charged: input is every input class, the cached
    part the cache reads; output includes the reasoning."""
    given = record.input_tokens + record.cache_read_tokens + record.cache_write_5m_tokens
    made = record.output_tokens + record.reasoning_tokens
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.output_tokens,
            usage.output_tokens_details.reasoning_tokens, usage.total_tokens) == (
        given, record.cache_read_tokens, made, record.reasoning_tokens, given + made)


@CHAT_ONLY
def test_a_response_from_a_chat_only_upstream(client, fake, gateway, key, model):
    fake.next(dialect=DIALECTS[model], input=700, cache_read=1024, output=33)
    response = client.responses.create(model=model, instructions="Be brief.", input="hi", store=False,
                                       max_output_tokens=200)
    request = fake.received[-1]
    assert request.path == "/v1/chat/completions"
    assert request.json == {"model": UPSTREAM_MODELS[model],
                            "max_tokens": 200, "messages": [{"role": "system", "content": "Be brief."},
                                                            {"role": "user", "content": "hi"}]}
    assert (response.object, response.model, response.status, response.output_text) == (
        "response", model, "completed", "Hello from the fake upstream")
    expected = quote(PRICES[model], Usage(input=700, cache_read=1024, output=33))
    assert charged(gateway, key) == expected
    record = the_record()
    assert (classes(record), record.cost, record.route) == (Usage(input=700, cache_read=1024, output=33),
                                                           expected, "responses")
    sdk_usage_matches(response.usage, record)


@CHAT_ONLY
def test_a_streamed_response_from_a_chat_only_upstream(client, fake, gateway, key, model):
    fake.next(dialect=DIALECTS[model], input=700, cache_read=512, output=33)
    with client.responses.stream(model=model, input=[{"role": "user", "content": "hi"}], store=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    expected = quote(PRICES[model], Usage(input=700, cache_read=512, output=33))
    assert charged(gateway, key) == expected  # settled by the time response.completed arrived
    assert sent(fake)["stream"] is True and sent(fake)["stream_options"] == {"include_usage": True}
    assert [e.type for e in events] == ["response.created", "response.in_progress", *TEXT_EVENTS,
                                        "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text
    assert (final.status, final.output_text) == ("completed", "Hello from the fake upstream")
    record = the_record()
    assert (classes(record), record.streamed) == (Usage(input=700, cache_read=512, output=33), True)
    sdk_usage_matches(final.usage, record)


def test_deepseek_reasoning_streams_as_a_reasoning_item(client, fake, gateway, key):
    fake.next(dialect="deepseek", input=90, output=12, reasoning=80, thinking="Think first. Then answer.")
    with client.responses.stream(model="deepseek-test", input="2+2?", store=False,
                                 reasoning={"effort": "high"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert "reasoning_effort" not in sent(fake)  # DeepSeek's models think by themselves
    assert [e.type for e in events][:6] == ["response.created", "response.in_progress", "response.output_item.added",
                                            *["response.reasoning_text.delta"] * 3]
    reasoning, message = final.output
    assert (reasoning.type, reasoning.content[0].text) == ("reasoning", "Think first. Then answer.")
    assert message.type == "message" and final.output_text == "Hello from the fake upstream"
    expected = quote(DEEPSEEK, Usage(input=90, output=12, reasoning=80))
    assert charged(gateway, key) == expected
    sdk_usage_matches(final.usage, the_record())


@CHAT_ONLY
def test_a_function_call_and_its_output_next_turn(client, fake, gateway, key, model):
    arguments = json.dumps({"city": "Lisbon"})
    fake.next(dialect=DIALECTS[model], input=300, output=20, text="",
              tool_calls=[ToolCall("get_weather", arguments, id="call_77")], fragment=3)
    with client.responses.stream(model=model, input="Weather in Lisbon?", tools=[WEATHER], store=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    first = quote(PRICES[model], Usage(input=300, output=20))
    assert charged(gateway, key) == first
    assert sent(fake)["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["parameters"], "description": WEATHER["description"]}}]
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(pieces) == -(-len(arguments) // 3) and "".join(pieces) == arguments
    assert [e.type for e in events][-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                                             "response.completed"]
    [call] = final.output
    assert (call.type, call.call_id, call.name, call.arguments, call.status) == (
        "function_call", "call_77", "get_weather", arguments, "completed")

    fake.next(dialect=DIALECTS[model], input=340, output=8, text="Sunny, 24C.")
    answer = client.responses.create(model=model, tools=[WEATHER], store=False, input=[
        {"role": "user", "content": "Weather in Lisbon?"},
        {"type": "function_call", "call_id": "call_77", "name": "get_weather", "arguments": arguments},
        {"type": "function_call_output", "call_id": "call_77", "output": "24C, sunny"}])
    assert sent(fake)["messages"] == [
        {"role": "user", "content": "Weather in Lisbon?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_77", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_77", "content": "24C, sunny"}]
    assert answer.output_text == "Sunny, 24C."
    assert charged(gateway, key) == first + quote(PRICES[model], Usage(input=340, output=8))


def test_a_complete_function_call(client, fake, gateway, key):
    fake.next(input=300, output=20, text="", tool_calls=[ToolCall("get_weather", {"city": "Lima"}, id="call_5")])
    response = client.responses.create(model="chatonly-test", input="Weather in Lima?", tools=[WEATHER],
                                       tool_choice={"type": "function", "name": "get_weather"}, store=False)
    assert sent(fake)["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    [call] = response.output
    assert (call.type, call.call_id, json.loads(call.arguments)) == ("function_call", "call_5", {"city": "Lima"})
    assert charged(gateway, key) == quote(PLAIN, Usage(input=300, output=20))


def test_running_out_of_output_is_an_incomplete_response(client, fake, gateway, key):
    fake.next(input=50, output=16, finish="length")
    with client.responses.stream(model="chatonly-test", input="tell me a story", max_output_tokens=16,
                                 store=False) as stream:
        events = list(stream)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert charged(gateway, key) == quote(PLAIN, Usage(input=50, output=16))


@CHAT_ONLY
@pytest.mark.parametrize("state", [{"store": True}, {"previous_response_id": "resp_abc123"},
                                   {"conversation": "conv_abc123"}], ids=["store", "previous_response_id",
                                                                          "conversation"])
def test_server_side_state_is_refused_before_any_hold(client, fake, gateway, key, model, state):
    with pytest.raises(openai.BadRequestError) as failed:
        client.responses.create(model=model, input="hi", **state)
    assert failed.value.code == "unsupported_by_upstream"
    body = failed.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert list(state)[0] in body["error"]["message"]
    assert fake.received == []
    assert charged(gateway, key) == 0
    assert records() == []


def test_an_upstream_with_the_responses_api_gets_the_call_as_it_is(client, fake, gateway, key):
    fake.next(input=40, output=7)
    response = client.responses.create(model="gpt-test", input="hi", store=True, previous_response_id="resp_1")
    request = fake.received[-1]
    assert request.path == "/v1/responses"
    assert (request.json["store"], request.json["previous_response_id"]) == (True, "resp_1")
    assert response.output_text == "Hello from the fake upstream"
    assert charged(gateway, key) == quote(GPT, Usage(input=40, output=7))


def test_a_response_from_an_anthropic_upstream(client, fake, gateway, key):
    fake.next(dialect="anthropic", input=500, cache_read=1500, cache_write=600, output=25)
    response = client.responses.create(model="claude-test", instructions="Be brief.", input="hi", store=False,
                                       max_output_tokens=300)
    request = fake.received[-1]
    assert request.path == "/v1/messages"
    assert request.json == {"model": "claude-upstream", "max_tokens": 300,
                            "system": [{"type": "text", "text": "Be brief."}],
                            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert (response.model, response.status, response.output_text) == ("claude-test", "completed",
                                                                       "Hello from the fake upstream")
    expected = quote(CLAUDE, Usage(input=500, cache_read=1500, cache_write_5m=600, output=25))
    assert charged(gateway, key) == expected
    record = the_record()
    assert classes(record) == Usage(input=500, cache_read=1500, cache_write_5m=600, output=25)
    sdk_usage_matches(response.usage, record)


def test_a_streamed_response_from_an_anthropic_upstream(client, fake, gateway, key):
    fake.next(dialect="anthropic", input=500, cache_read=1500, output=25)
    with client.responses.stream(model="claude-test", input="hi", store=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    expected = quote(CLAUDE, Usage(input=500, cache_read=1500, output=25))
    assert charged(gateway, key) == expected
    assert fake.received[-1].path == "/v1/messages" and sent(fake)["stream"] is True
    assert [e.type for e in events] == ["response.created", "response.in_progress", *TEXT_EVENTS,
                                        "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "Hello from the fake upstream"
    sdk_usage_matches(final.usage, the_record())


def test_a_streamed_tool_call_from_an_anthropic_upstream(client, fake, gateway, key):
    fake.next(dialect="anthropic", input=320, output=30, text="",
              tool_calls=[ToolCall("get_weather", {"city": "Kyiv"}, id="toolu_9")], fragment=2)
    with client.responses.stream(model="claude-test", input="Weather in Kyiv?", tools=[WEATHER],
                                 store=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert sent(fake)["tools"] == [{"name": "get_weather", "description": "The weather in a city.",
                                    "input_schema": WEATHER["parameters"]}]
    assert len([e for e in events if e.type == "response.function_call_arguments.delta"]) > 5
    [call] = final.output
    assert (call.type, call.call_id, json.loads(call.arguments)) == ("function_call", "toolu_9", {"city": "Kyiv"})
    assert charged(gateway, key) == quote(CLAUDE, Usage(input=320, output=30))


def test_a_custom_tool_round_trip(client, fake, gateway, key):
    """Codex's apply_patch is a custom (free-form) tool: a function with one string parameter upstream."""
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch"
    tool = {"type": "custom", "name": "apply_patch", "description": "Apply a patch.",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/s"}}
    fake.next(input=500, output=40, text="", tool_calls=[ToolCall("apply_patch", {"input": patch}, id="call_p")])
    with client.responses.stream(model="chatonly-test", input="Add hello.txt", tools=[tool], store=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    [function] = sent(fake)["tools"]
    assert function["function"]["name"] == "apply_patch"
    assert function["function"]["parameters"]["required"] == ["input"]
    assert "start: /.+/s" in function["function"]["parameters"]["properties"]["input"]["description"]
    assert [e.type for e in events][2:-1] == ["response.output_item.added", "response.custom_tool_call_input.delta",
                                              "response.custom_tool_call_input.done", "response.output_item.done"]
    [call] = final.output
    assert (call.type, call.call_id, call.name, call.input) == ("custom_tool_call", "call_p", "apply_patch", patch)
    first = quote(PLAIN, Usage(input=500, output=40))
    assert charged(gateway, key) == first

    fake.next(input=560, output=5, text="Done.")
    client.responses.create(model="chatonly-test", tools=[tool], store=False, input=[
        {"role": "user", "content": "Add hello.txt"},
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": patch},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Success."}])
    assert sent(fake)["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_p", "type": "function",
             "function": {"name": "apply_patch", "arguments": json.dumps({"input": patch})}}]},
        {"role": "tool", "tool_call_id": "call_p", "content": "Success."}]
    assert charged(gateway, key) == first + quote(PLAIN, Usage(input=560, output=5))


def test_a_function_call_output_reaches_an_anthropic_upstream_as_a_tool_result(client, fake, gateway, key):
    fake.next(dialect="anthropic", input=400, output=9, text="It is 3C in Kyiv.")
    response = client.responses.create(model="claude-test", tools=[WEATHER], store=False, input=[
        {"role": "user", "content": "Weather in Kyiv?"},
        {"type": "function_call", "call_id": "toolu_9", "name": "get_weather", "arguments": '{"city": "Kyiv"}'},
        {"type": "function_call_output", "call_id": "toolu_9", "output": "3C"}])
    assert sent(fake)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Kyiv?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "get_weather",
                                           "input": {"city": "Kyiv"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "3C"}]}]
    assert response.output_text == "It is 3C in Kyiv."
    assert charged(gateway, key) == quote(CLAUDE, Usage(input=400, output=9))
