"""OpenAI chat completions carried to an Anthropic upstream (proxy/translate/chat_over_messages.py):
requests out, complete answers and streams back, on fixtures shaped as the providers document them."""
import json

import pytest
from openai.types.chat import ChatCompletion

from proxy.translate.chat_over_messages import FINISH_REASONS, JSON_TOOL, Events, request, response
from tests.translate.streams import anthropic_said, check_chat, document, run, split_anthropic, sse

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


def messages(body: dict, max_output: int = 32000) -> dict:
    out, _ = request({"model": "claude-sonnet-4-5", **body}, max_output=max_output)
    return out


def hi(**more) -> dict:
    return messages({"messages": [{"role": "user", "content": "hi"}], **more})


# --- requests --------------------------------------------------------------------------------------

def test_system_and_developer_messages_become_the_system_blocks():
    out = messages({"messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                                 {"role": "user", "content": "hi"}]})
    assert out == {"model": "claude-sonnet-4-5", "max_tokens": 32000,
                   "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}],
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


def test_content_parts_images_and_files():
    out = messages({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/a.jpg"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}]}]})
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What are these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}]


def test_tool_calls_and_tool_messages_become_tool_use_and_one_user_turn_of_results():
    out = messages({"tools": [WEATHER], "messages": [
        {"role": "user", "content": "Weather in Paris and Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "15 degrees"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "no such city"}]},
        {"role": "user", "content": "Summarise."}]})
    assert out["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_a", "content": "15 degrees"},
            {"type": "tool_result", "tool_use_id": "call_b", "content": "no such city"},
            {"type": "text", "text": "Summarise."}]}]
    assert out["tools"] == [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"],
                             "description": "Get the current weather in a given location"}]


def test_an_assistant_refusal_is_kept_as_text():
    out = messages({"messages": [{"role": "user", "content": "x"},
                                 {"role": "assistant", "content": None, "refusal": "I can't."},
                                 {"role": "user", "content": "ok"}]})
    assert out["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "I can't."}]}


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"})])
def test_tool_choice(choice, expected):
    assert hi(tools=[WEATHER], tool_choice=choice)["tool_choice"] == expected


def test_parallel_tool_calls_false():
    assert hi(tools=[WEATHER], parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True}
    assert hi(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)["tool_choice"] == {
        "type": "any", "disable_parallel_tool_use": True}
    # Anthropic's tool_choice none takes no such field
    assert hi(tools=[WEATHER], tool_choice="none", parallel_tool_calls=False)["tool_choice"] == {"type": "none"}


def test_a_json_schema_answer_is_one_forced_tool():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    out, json_tool = request({"model": "c", "messages": [{"role": "user", "content": "hi"}],
                              "response_format": {"type": "json_schema",
                                                  "json_schema": {"name": "reply", "schema": schema, "strict": True}}},
                             max_output=32000)
    assert json_tool == JSON_TOOL
    assert out["tools"] == [{"name": JSON_TOOL, "description": "Give the answer in this shape.", "input_schema": schema}]
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


def test_a_json_object_answer_is_asked_in_the_system_prompt():
    out, json_tool = request({"model": "c", "messages": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "hi"}],
                              "response_format": {"type": "json_object"}}, max_output=32000)
    assert json_tool is None and out["system"][-1] == {"type": "text", "text": "Answer with one JSON object only."}
    assert "tools" not in hi(response_format={"type": "text"})


@pytest.mark.parametrize("given, sent", [(0, 0), (0.3, 0.3), (1, 1), (1.5, 1), (2, 1)])
def test_temperature_is_clamped_to_anthropics_range(given, sent):
    assert hi(temperature=given)["temperature"] == sent


def test_temperature_and_top_p_together_send_the_temperature_only():
    """Newer Claude models refuse the two together; the temperature is the one most clients mean."""
    both = hi(temperature=0.2, top_p=0.9)
    assert both["temperature"] == 0.2 and "top_p" not in both
    assert hi(top_p=0.9)["top_p"] == 0.9


def test_stop_user_top_p_and_stream():
    out = hi(stop="END", user="user-1", top_p=0.5, stream=True, stream_options={"include_usage": True},
             frequency_penalty=0.5, seed=7)
    assert out["stop_sequences"] == ["END"] and out["metadata"] == {"user_id": "user-1"}
    assert out["top_p"] == 0.5 and out["stream"] is True
    assert not {"stream_options", "frequency_penalty", "seed", "stop", "user"} & set(out)
    assert hi(stop=["a", "b"])["stop_sequences"] == ["a", "b"]


@pytest.mark.parametrize("effort, budget", [("minimal", 1024), ("low", 1024), ("medium", 4096), ("high", 16384)])
def test_reasoning_effort_becomes_a_thinking_budget(effort, budget):
    out = hi(reasoning_effort=effort, temperature=0.5, top_p=0.9)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert "temperature" not in out and "top_p" not in out  # thinking takes the defaults only


def test_a_thinking_budget_stays_under_the_output_limit():
    out = messages({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high"}, max_output=2000)
    assert out["thinking"]["budget_tokens"] == 1999
    assert "thinking" not in messages({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high"},
                                      max_output=1024)
    assert "thinking" not in hi(reasoning_effort="none")


@pytest.mark.parametrize("forced", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_no_thinking_with_a_forced_tool(forced):
    # Anthropic refuses thinking when tool_choice forces tool use
    out = hi(tools=[WEATHER], tool_choice=forced, reasoning_effort="medium")
    assert "thinking" not in out
    assert hi(tools=[WEATHER], tool_choice="auto", reasoning_effort="medium")["thinking"]["budget_tokens"] == 4096
    schema = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}
    assert "thinking" not in hi(response_format=schema, reasoning_effort="medium")


@pytest.mark.parametrize("tier, sent", [("default", "standard_only"), ("auto", "auto")])
def test_service_tier(tier, sent):
    assert hi(service_tier=tier)["service_tier"] == sent


# --- complete answers ------------------------------------------------------------------------------

def test_a_message_with_tool_use_becomes_tool_calls():
    completion = response(document("anthropic-message-tool-use.json"), model="claude-public")
    ChatCompletion.model_validate(completion)
    assert completion["id"] == "chatcmpl-01Aq9w938a90dw8q" and completion["model"] == "claude-public"
    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in both cities."
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in choice["message"]["tool_calls"]] == [
        ("toolu_01A09q90qw90lq917835lq9", "get_weather", {"location": "San Francisco, CA", "unit": "celsius"}),
        ("toolu_01B19r01rx01mr028946mr0", "get_weather", {"location": "東京", "unit": "celsius"})]
    # input 2095 + cache writes 2051 + cache reads 8000 make the prompt
    assert completion["usage"] == {
        "prompt_tokens": 12146, "completion_tokens": 503, "total_tokens": 12649,
        "prompt_tokens_details": {"cached_tokens": 8000, "cache_write_tokens": 2051, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}


def test_thinking_comes_back_as_reasoning_content():
    completion = response(document("anthropic-message-thinking.json"), model="m")
    message = completion["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me analyze this step by step..."
    assert message["content"] == "Based on my analysis..." and "tool_calls" not in message
    assert completion["choices"][0]["finish_reason"] == "length"


def test_a_json_answer_comes_back_as_text():
    upstream = {"id": "msg_1", "type": "message", "role": "assistant", "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {"answer": "四十二"}}],
        "usage": {"input_tokens": 10, "output_tokens": 5}}
    completion = response(upstream, model="m", json_tool=JSON_TOOL)
    assert completion["choices"][0]["message"]["content"] == '{"answer": "四十二"}'
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in completion["choices"][0]["message"]


@pytest.mark.parametrize("stop, finish", [("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"),
                                          ("max_tokens", "length"), ("model_context_window_exceeded", "length"),
                                          ("tool_use", "tool_calls"), ("refusal", "content_filter"), (None, "stop")])
def test_stop_reasons(stop, finish):
    assert FINISH_REASONS.get(stop, "stop") == finish
    upstream = {"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop}
    assert response(upstream, model="m")["choices"][0]["finish_reason"] == finish
    events = [("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {}}}),
              ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 1}}),
              ("message_stop", {"type": "message_stop"})]
    completion = check_chat(run(Events(model="m", wants_usage=False), events, named=False), wants_usage=False)
    assert completion.choices[0].finish_reason == finish


# --- streams ---------------------------------------------------------------------------------------

STREAMS = ["anthropic-stream-text.sse", "anthropic-stream-tool-use.sse", "anthropic-stream-thinking.sse"]
CUTS = {"as sent": lambda events: events, "one character a delta": split_anthropic,
        "five characters a delta": lambda events: split_anthropic(events, 5)}


@pytest.mark.parametrize("wants_usage", [True, False], ids=["include_usage", "no usage"])
@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("name", STREAMS)
def test_streams_become_chat_chunks(name, cut, wants_usage):
    chunks = run(Events(model="public", wants_usage=wants_usage), CUTS[cut](sse(name)), named=False)
    completion = check_chat(chunks, wants_usage=wants_usage)
    blocks = anthropic_said(sse(name))
    message = completion.choices[0].message
    assert message.content == "".join(b[1] for b in blocks if b[0] == "text")
    assert (message.model_extra.get("reasoning_content") or "") == "".join(b[1] for b in blocks if b[0] == "thinking")
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()] == [
        b[1:] for b in blocks if b[0] == "tool_use"]
    assert completion.model == "public" and completion.id == f"chatcmpl-{sse(name)[0][1]['message']['id'][4:]}"


@pytest.mark.parametrize("name, usage", [
    ("anthropic-stream-text.sse", (4625, 3400, 1200, 15)),   # 25 input + 1200 written + 3400 read
    ("anthropic-stream-tool-use.sse", (472, 0, 0, 89)),
    ("anthropic-stream-thinking.sse", (46, 0, 0, 312))])
def test_the_usage_chunk_sums_message_start_and_message_delta(name, usage):
    completion = check_chat(run(Events(model="m", wants_usage=True), sse(name), named=False), wants_usage=True)
    found = completion.usage
    assert (found.prompt_tokens, found.prompt_tokens_details.cached_tokens,
            found.prompt_tokens_details.cache_write_tokens, found.completion_tokens) == usage
    assert found.total_tokens == usage[0] + usage[3]


def test_finish_reason_comes_before_the_usage_chunk_and_done():
    chunks = run(Events(model="m", wants_usage=True), sse("anthropic-stream-tool-use.sse"), named=False)
    assert chunks[-3][1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-2][1]["choices"] == [] and chunks[-1] == (None, "[DONE]")


def test_a_json_answer_streams_as_content():
    stream = [(name, data) for name, data in sse("anthropic-stream-tool-use.sse")
              if not (isinstance(data, dict) and data.get("index") == 0)]  # the tool block only
    stream = [(name, {**data, "index": 0}) if isinstance(data, dict) and "index" in data else (name, data)
              for name, data in stream]
    chunks = run(Events(model="m", wants_usage=False, json_tool="get_weather"), split_anthropic(stream, 2),
                 named=False)
    completion = check_chat(chunks, wants_usage=False)
    assert json.loads(completion.choices[0].message.content) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert completion.choices[0].finish_reason == "stop" and not completion.choices[0].message.tool_calls


def test_an_error_event_becomes_an_error_chunk_and_ends_the_stream():
    chunks = run(Events(model="m", wants_usage=True), sse("anthropic-stream-error.sse"), named=False)
    check_chat(chunks, wants_usage=True, error=True)
    assert chunks[-1] == (None, {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None,
                                           "code": None}})
    assert chunks[1][1]["choices"][0]["delta"] == {"content": "Once upon"}


def test_blocks_this_translation_does_not_carry_are_skipped():
    stream = sse("anthropic-stream-text.sse")
    extra = [("content_block_start", {"type": "content_block_start", "index": 1,
                                      "content_block": {"type": "redacted_thinking", "data": "EmwK"}}),
             ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                      "delta": {"type": "signature_delta", "signature": "x"}}),
             ("content_block_stop", {"type": "content_block_stop", "index": 1})]
    chunks = run(Events(model="m", wants_usage=False), stream[:-2] + extra + stream[-2:], named=False)
    assert check_chat(chunks, wants_usage=False).choices[0].message.content == "Hello! How can I help — 你好?"
