"""Anthropic's Messages API carried to an OpenAI chat upstream (proxy/translate/messages_over_chat.py):
requests out, complete answers and streams back, on fixtures shaped as the providers document them."""
import json

import pytest
from anthropic.types import Message

from proxy.errors import ApiError
from proxy.translate import messages_over_chat
from proxy.translate.messages_over_chat import STOP_REASONS, Events, request, response
from tests.translate.streams import (chat_said, check_anthropic, document, run, split_chat, sse)

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def chat(body: dict, dialect: str = "openai", max_output: int = 1000) -> dict:
    return request({"model": "gpt-4.1", "max_tokens": max_output, **body}, dialect=dialect, max_output=max_output)


def user(*blocks) -> dict:
    return {"role": "user", "content": list(blocks)}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


# --- requests --------------------------------------------------------------------------------------

def test_system_prompt_as_a_string_and_as_blocks():
    assert chat({"system": "Be brief.", "messages": [user(text("hi"))]})["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    blocks = [text("You are Claude Code."), {**text("Be brief."), "cache_control": {"type": "ephemeral"}}]
    assert chat({"system": blocks, "messages": [user(text("hi"))]})["messages"][0] == {
        "role": "system", "content": "You are Claude Code.\nBe brief."}


def test_a_multi_turn_conversation_keeps_its_turns_in_order():
    out = chat({"messages": [{"role": "user", "content": "What is 2+2?"},
                             {"role": "assistant", "content": [text("4.")]},
                             user(text("And 3+3?"), text("Answer in words."))]})
    assert out["messages"] == [{"role": "user", "content": "What is 2+2?"},
                               {"role": "assistant", "content": "4."},
                               {"role": "user", "content": "And 3+3?\nAnswer in words."}]


def test_images_by_base64_and_by_url_become_image_url_parts():
    out = chat({"messages": [user(
        text("What is in these?"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}})]})
    assert out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/a.jpg"}}]}]


def test_documents_as_text_and_as_a_pdf_for_openai():
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
           "title": "report.pdf"}
    plain = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
             "title": "Notes"}
    out = chat({"messages": [user(plain, pdf)]})
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Notes\n\nThe grass is green."},
        {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}]
    with pytest.raises(ApiError) as refused:  # DeepSeek's chat takes no files
        chat({"messages": [user(pdf)]}, dialect="deepseek")
    assert refused.value.status == 400 and "messages[0].content[0]" in refused.value.message


WEATHER = {"name": "get_weather", "description": "Get the current weather in a given location",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}


def test_tools_become_functions():
    out = chat({"messages": [user(text("weather?"))], "tools": [WEATHER, {**WEATHER, "name": "plain",
                                                                            "description": None}]})
    assert out["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"],
                                          "description": "Get the current weather in a given location"}},
        {"type": "function", "function": {"name": "plain", "parameters": WEATHER["input_schema"]}}]


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
])
def test_tool_choice(choice, expected):
    out = chat({"messages": [user(text("hi"))], "tools": [WEATHER], "tool_choice": choice})
    assert out["tool_choice"] == expected and "parallel_tool_calls" not in out
    single = chat({"messages": [user(text("hi"))], "tools": [WEATHER],
                   "tool_choice": {**choice, "disable_parallel_tool_use": True}})
    assert single["parallel_tool_calls"] is False


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "none"}, {"type": "any"},
                                    {"type": "tool", "name": "get_weather"}])
def test_a_tool_choice_without_tools_is_left_out(choice):
    """OpenAI refuses tool_choice without tools; a wrong one is still refused."""
    assert "tool_choice" not in chat({"messages": [user(text("hi"))], "tool_choice": choice})
    with pytest.raises(ApiError):
        chat({"messages": [user(text("hi"))], "tool_choice": {"type": "sometimes"}})


def test_tool_use_and_tool_results_become_tool_calls_and_tool_messages():
    out = chat({"tools": [WEATHER], "messages": [
        user(text("Weather in Paris and Tokyo?")),
        {"role": "assistant", "content": [
            text("Checking both."),
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"location": "東京"}}]},
        user({"type": "tool_result", "tool_use_id": "toolu_01A", "content": "15 degrees"},
             {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [text("no such"), text("city")],
              "is_error": True},
             text("Thanks; summarise."))]})
    assert out["messages"][1:] == [
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "toolu_01A", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"location": "Paris"})}},
            {"id": "toolu_01B", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"location": "東京"}, ensure_ascii=False)}}]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "15 degrees"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "Error: no such\ncity"},
        {"role": "user", "content": "Thanks; summarise."}]


def test_an_image_in_a_tool_result_follows_as_the_users_part():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    out = chat({"messages": [
        user(text("screenshot please")),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}]},
        user({"type": "tool_result", "tool_use_id": "toolu_1", "content": [text("here"), image]})]})
    assert out["messages"][1]["content"] is None
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "here"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]


@pytest.mark.parametrize("budget, effort", [(1024, "low"), (4095, "low"), (4096, "medium"), (16383, "medium"),
                                            (16384, "high"), (32000, "high")])
def test_thinking_budget_becomes_reasoning_effort(budget, effort):
    thinking = {"type": "enabled", "budget_tokens": budget}
    assert chat({"messages": [user(text("hi"))], "thinking": thinking})["reasoning_effort"] == effort


def test_thinking_per_dialect_and_adaptive_thinking_is_left_to_the_upstream():
    thinking = {"type": "enabled", "budget_tokens": 8000}
    dashscope = chat({"messages": [user(text("hi"))], "thinking": thinking}, dialect="dashscope")
    assert dashscope["enable_thinking"] is True and dashscope["thinking_budget"] == 8000
    deepseek = chat({"messages": [user(text("hi"))], "thinking": thinking}, dialect="deepseek")
    assert not {"reasoning_effort", "enable_thinking"} & set(deepseek)
    # Claude Code's adaptive thinking and output_config.effort: the upstream's own default (docs/translation.md)
    adaptive = chat({"messages": [user(text("hi"))], "thinking": {"type": "adaptive"},
                     "output_config": {"effort": "high"}})
    assert not {"reasoning_effort", "output_config", "thinking"} & set(adaptive)
    disabled = chat({"messages": [user(text("hi"))], "thinking": {"type": "disabled"}})
    assert "reasoning_effort" not in disabled


def test_thinking_in_the_history_goes_back_only_to_deepseek():
    body = {"messages": [
        user(text("hi")),
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Let me look.", "signature": ""}, {"type": "redacted_thinking", "data": "EmwK"},
            {"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {}}]},
        user({"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"})]}
    call = [{"id": "toolu_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]
    assert chat(body)["messages"][1] == {"role": "assistant", "content": None, "tool_calls": call}
    # DeepSeek's thinking mode refuses a tool-call turn without its reasoning
    assert chat(body, dialect="deepseek")["messages"][1] == {"role": "assistant", "content": None, "tool_calls": call,
                                                             "reasoning_content": "Let me look."}


def test_sampling_stops_user_tier_limit_and_stream():
    out = chat({"messages": [user(text("hi"))], "temperature": 0.7, "top_p": 0.9, "top_k": 5,
                "stop_sequences": ["\n\nHuman:", "END"], "metadata": {"user_id": "u" * 300},
                "service_tier": "standard_only", "stream": True}, max_output=777)
    assert out == {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}],
                   "max_completion_tokens": 777, "temperature": 0.7, "top_p": 0.9,
                   "stop": ["\n\nHuman:", "END"], "user": messages_over_chat.end_user("u" * 300),
                   "service_tier": "default", "stream": True,
                   "stream_options": {"include_usage": True}}


@pytest.mark.parametrize("dialect, limit, user_sent", [
    ("openai", "max_completion_tokens", True), ("openrouter", "max_completion_tokens", True),
    ("xai", "max_tokens", True), ("generic-openai", "max_tokens", True),
    ("deepseek", "max_tokens", False), ("moonshot", "max_tokens", False), ("dashscope", "max_tokens", False)])
def test_output_limit_and_user_per_dialect(dialect, limit, user_sent):
    out = chat({"messages": [user(text("hi"))], "metadata": {"user_id": "user-1"}}, dialect=dialect, max_output=500)
    assert out[limit] == 500 and ("user" in out) == user_sent
    assert ({"max_tokens", "max_completion_tokens"} - {limit}).isdisjoint(out)


@pytest.mark.parametrize("tier, sent", [("auto", "auto"), ("standard_only", "default")])
def test_service_tier(tier, sent):
    assert chat({"messages": [user(text("hi"))], "service_tier": tier})["service_tier"] == sent


def test_claude_codes_recorded_request_is_carried():
    recorded = document("claude-code-request.json")
    out = request(recorded, dialect="openai", max_output=32000)
    roles = [message["role"] for message in out["messages"]]
    assert roles == ["system", "user", "system"]  # the mid-conversation system message stays where it was
    assert out["messages"][0]["content"] == "\n".join(block["text"] for block in recorded["system"])
    assert out["messages"][2]["content"] == recorded["messages"][1]["content"]
    assert [tool["function"]["name"] for tool in out["tools"]] == ["Bash", "Edit", "Read"]
    assert [tool["function"]["parameters"] for tool in out["tools"]] == [t["input_schema"] for t in recorded["tools"]]
    assert out["user"] == messages_over_chat.end_user(recorded["metadata"]["user_id"])
    # Anthropic-only fields stay behind
    assert not {"thinking", "context_management", "output_config", "system", "metadata", "max_tokens"} & set(out)
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}


# --- complete answers ------------------------------------------------------------------------------

def test_a_completion_with_parallel_tool_calls_becomes_tool_use_blocks():
    upstream = document("openai-chat-completion-tool-calls.json")
    message = response(upstream, model="gpt-public", dialect="openai")
    Message.model_validate(message)
    assert message["id"] == "msg_C3RxkqMf6jGzIIQ8TqzS1gJRL2b2d" and message["model"] == "gpt-public"
    assert message["content"] == [
        {"type": "tool_use", "id": "call_12345xyz", "name": "get_weather", "input": {"location": "Paris, France"}},
        {"type": "tool_use", "id": "call_67890abc", "name": "get_weather", "input": {"location": "Bogotá, Colombia"}}]
    assert message["stop_reason"] == "tool_use"
    # 1117 prompt tokens of which 1024 cached; 846 completion tokens, reasoning (640) included
    assert message["usage"] == {"input_tokens": 93, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024,
                                "output_tokens": 846}


def test_deepseek_reasoning_becomes_a_thinking_block():
    message = response(document("deepseek-chat-completion-reasoning.json"), model="ds", dialect="deepseek")
    Message.model_validate(message)
    assert message["content"] == [
        {"type": "thinking", "thinking": "Okay, the user asks 9.11 vs 9.8. Compare tenths: 8 > 1.", "signature": ""},
        {"type": "text", "text": "9.8 is greater."}]
    assert message["stop_reason"] == "max_tokens"
    # DeepSeek's prompt_cache_hit_tokens are the cache reads, the rest of the prompt is input
    assert message["usage"] == {"input_tokens": 16, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024,
                                "output_tokens": 372}


def test_a_refusal_and_arguments_that_are_not_an_object():
    upstream = {"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "refusal": "I can't help with that.",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}}]}
    message = response(upstream, model="m", dialect="openai")
    assert message["content"] == [{"type": "text", "text": "I can't help with that."},
                                  {"type": "tool_use", "id": "call_1", "name": "f", "input": {"arguments": "[1, 2]"}}]
    assert message["usage"]["input_tokens"] == 0  # no usage reported: zeros (the meter charges by its own rules)


@pytest.mark.parametrize("finish, stop", [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
                                          ("function_call", "tool_use"), ("content_filter", "refusal"),
                                          ("insufficient_system_resource", "end_turn"), (None, "end_turn")])
def test_finish_reasons(finish, stop):
    assert STOP_REASONS.get(finish, "end_turn") == stop
    upstream = {"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": finish,
                                                 "message": {"role": "assistant", "content": "x"}}]}
    assert response(upstream, model="m", dialect="openai")["stop_reason"] == stop
    chunks = [(None, {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "x"}}]}),
              (None, {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}), (None, "[DONE]")]
    assert check_anthropic(run(Events(model="m", dialect="openai"), chunks, named=True)).stop_reason == stop


# --- streams ---------------------------------------------------------------------------------------

STREAMS = [("openai-chat-stream-text.sse", "openai"), ("openai-chat-stream-parallel-tools.sse", "openai"),
           ("deepseek-chat-stream-reasoning.sse", "deepseek")]
CUTS = {"as sent": lambda chunks: chunks, "one character a chunk": split_chat,
        "three characters a chunk": lambda chunks: split_chat(chunks, 3)}


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("name, dialect", STREAMS)
def test_streams_become_anthropic_events(name, dialect, cut):
    upstream = CUTS[cut](sse(name))
    message = check_anthropic(run(Events(model="public", dialect=dialect), upstream, named=True))
    said = chat_said(sse(name))
    blocks = [(block.type, block.thinking if block.type == "thinking" else block.text if block.type == "text"
               else (block.id, block.name, block.input)) for block in message.content]
    expected = ([("thinking", said["reasoning"])] if said["reasoning"] else []) + \
               ([("text", said["text"])] if said["text"] else []) + \
               [("tool_use", (call["id"], call["name"], json.loads(call["arguments"]))) for call in said["calls"]]
    assert blocks == expected
    assert message.model == "public" and message.stop_reason == STOP_REASONS[said["finish"]]


@pytest.mark.parametrize("name, dialect, usage", [
    ("openai-chat-stream-text.sse", "openai", (93, 1024, 46)),
    ("openai-chat-stream-parallel-tools.sse", "openai", (85, 0, 54)),
    ("deepseek-chat-stream-reasoning.sse", "deepseek", (16, 0, 372))])
def test_stream_usage_comes_in_message_delta(name, dialect, usage):
    events = run(Events(model="m", dialect=dialect), sse(name), named=True)
    start = events[0][1]["message"]["usage"]
    assert start["input_tokens"] == 0 and start["output_tokens"] == 0  # chat reports usage only at the end
    final = events[-2][1]["usage"]
    assert (final["input_tokens"], final["cache_read_input_tokens"], final["output_tokens"]) == usage
    assert check_anthropic(events).usage.output_tokens == usage[2]


def test_content_and_finish_reason_in_one_chunk_and_usage_inside_the_choice():
    chunks = [(None, {"id": "chatcmpl-9", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}),
              (None, {"id": "chatcmpl-9", "choices": [{"index": 0, "delta": {"content": " there"},
                                                       "finish_reason": "stop",
                                                       "usage": {"prompt_tokens": 7, "completion_tokens": 2,
                                                                 "total_tokens": 9, "cached_tokens": 4}}]}),
              (None, "[DONE]")]
    events = run(Events(model="m", dialect="moonshot"), chunks, named=True)
    message = check_anthropic(events)
    assert message.content[0].text == "Hi there" and message.id == "msg_9"
    assert events[-2][1]["usage"]["input_tokens"] == 3 and events[-2][1]["usage"]["cache_read_input_tokens"] == 4


def test_a_stream_with_nothing_but_done_is_still_a_whole_message():
    message = check_anthropic(run(Events(model="m", dialect="openai"), [(None, "[DONE]")], named=True))
    assert message.content == [] and message.stop_reason == "end_turn"


def test_interleaved_tool_arguments_are_refused_mid_stream():
    def call(index, **fields):
        return (None, {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": index, **fields}]}}]})
    events = Events(model="m", dialect="openai")
    for name, data in [call(0, id="call_a", function={"name": "a", "arguments": "{"}),
                       call(1, id="call_b", function={"name": "b", "arguments": "{"})]:
        events.feed(name, data)
    with pytest.raises(ApiError) as refused:
        events.feed(*call(0, function={"arguments": "}"}))
    assert refused.value.status == 400 and refused.value.code == "unsupported_by_upstream"


def test_an_error_chunk_becomes_an_error_event():
    error = {"error": {"message": "The server had an error while processing your request.", "type": "server_error",
                       "param": None, "code": None}}
    events = run(Events(model="m", dialect="openai"), [(None, error)], named=True)
    assert events == [("error", {"type": "error", "error": {
        "type": "api_error", "message": "The server had an error while processing your request."}})]


def test_the_stream_ends_at_done_only():
    events = Events(model="m", dialect="openai")
    events.feed(None, {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "x"}}]})
    assert events.finish() == []  # cut short: the relay reports it
    tail = events.feed(None, "[DONE]")
    assert [name for name, _ in tail] == ["content_block_stop", "message_delta", "message_stop"]
    assert events.feed(None, "[DONE]") == []


def test_a_long_end_user_id_is_sent_as_a_stable_digest():
    short, long = "user-1", '{"device_id":"' + "7b" * 40 + '"}'
    assert messages_over_chat.end_user(short) == short
    digest = messages_over_chat.end_user(long)
    assert digest == messages_over_chat.end_user(long) != messages_over_chat.end_user(long + " ")
    assert len(digest) <= 64 and long not in digest


def test_the_module_maps_effort_at_the_documented_thresholds():
    assert [messages_over_chat.effort(b) for b in (0, 4095, 4096, 16383, 16384)] == [
        "low", "low", "medium", "medium", "high"]


def test_a_streamed_refusal_is_said_as_text():
    chunks = [(None, {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": None,
                                                                     "refusal": ""}}]}),
              (None, {"id": "c", "choices": [{"index": 0, "delta": {"refusal": "I'm sorry, "}}]}),
              (None, {"id": "c", "choices": [{"index": 0, "delta": {"refusal": "I can't help with that."}}]}),
              (None, {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), (None, "[DONE]")]
    message = check_anthropic(run(Events(model="m", dialect="openai"), chunks, named=True))
    assert [(block.type, block.text) for block in message.content] == [("text", "I'm sorry, I can't help with that.")]
