"""OpenAI's Responses API carried to a chat-only upstream (proxy/translate/responses_over_chat.py),
and on to an Anthropic one (the chained translation): requests out, answers and streams back."""
import json

import pytest
from openai.types.responses import Response

from portal.catalog import UpstreamInfo
from proxy.errors import ApiError
from proxy.protocols import CHAT, COUNT_TOKENS, EMBEDDINGS, MESSAGES, RESPONSES
from proxy.translate import (ESTIMATE, Call, Chained, ChatOverMessages, MessagesOverChat, ResponsesOverChat,
                             translator, upstream_route)
from proxy.translate.responses_over_chat import CUSTOM_INPUT, Events, request, response
from tests.translate.streams import (anthropic_said, chat_said, check_responses, document, run, split_anthropic,
                                     split_chat, sse)

PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"


def chat(body: dict, dialect: str = "deepseek", max_output: int = 1000) -> dict:
    out, _ = request({"model": "deepseek-chat", **body}, dialect=dialect, max_output=max_output)
    return out


def events(custom=frozenset(), request_document=None, dialect="deepseek") -> Events:
    return Events(model="public", dialect=dialect, custom=set(custom), request_document=request_document or {})


# --- requests --------------------------------------------------------------------------------------

def test_codex_request_is_carried():
    recorded = document("codex-request.json")
    out, tools = request(recorded, dialect="deepseek", max_output=8000)
    assert "apply_patch" in tools and "shell" not in tools  # the custom tool, whose calls carry raw input
    assert out["messages"] == [
        {"role": "system", "content": recorded["instructions"]},
        {"role": "system", "content": recorded["input"][0]["content"][0]["text"]},  # developer
        {"role": "user", "content": recorded["input"][1]["content"][0]["text"]},
        {"role": "user", "content": "add hello.txt saying hi, then list the files"},
        # the reasoning goes back with its call (DeepSeek's thinking mode wants it); the custom call is a
        # function call with the raw input as "input"
        {"role": "assistant", "content": "", "reasoning_content": "**Adding the file**", "tool_calls": [
            {"id": "call_8sK2pQm1Vw7XcR4tYb0nLd3e", "type": "function",
             "function": {"name": "apply_patch", "arguments": json.dumps({CUSTOM_INPUT: PATCH})}}]},
        {"role": "tool", "tool_call_id": "call_8sK2pQm1Vw7XcR4tYb0nLd3e", "content": recorded["input"][5]["output"]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_QvGdKJ1mB2bZ3d6Yx8wVnR4e", "type": "function",
             "function": {"name": "shell", "arguments": recorded["input"][6]["arguments"]}}]},
        {"role": "tool", "tool_call_id": "call_QvGdKJ1mB2bZ3d6Yx8wVnR4e", "content": recorded["input"][7]["output"]},
        {"role": "assistant", "content": "Added hello.txt; the folder holds README.md, hello.txt and src."},
        {"role": "user", "content": "thanks"}]
    shell, apply_patch = out["tools"]
    assert shell == {"type": "function", "function": {"name": "shell", "parameters": recorded["tools"][0]["parameters"],
                                                      "strict": False, "description": recorded["tools"][0]["description"]}}
    parameters = apply_patch["function"]["parameters"]
    assert parameters["required"] == [CUSTOM_INPUT] and parameters["properties"][CUSTOM_INPUT]["type"] == "string"
    assert recorded["tools"][1]["format"]["definition"] in parameters["properties"][CUSTOM_INPUT]["description"]
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is False
    assert out["max_tokens"] == 8000 and out["stream"] is True and out["stream_options"] == {"include_usage": True}
    # nothing of the Responses API's own: no state, no include, no reasoning effort for DeepSeek
    assert not {"store", "include", "prompt_cache_key", "reasoning", "reasoning_effort", "text", "instructions",
                "input"} & set(out)
    # an upstream that takes no reasoning back gets none
    openai, _ = request(recorded, dialect="openai", max_output=8000)
    assert openai["messages"][4] == {"role": "assistant", "content": None, "tool_calls": out["messages"][4]["tool_calls"]}
    assert not any("reasoning_content" in message for message in openai["messages"])


def test_reasoning_goes_back_to_deepseek_with_the_turn_it_began():
    thought = {"type": "reasoning", "id": "rs_1", "summary": [],
               "content": [{"type": "reasoning_text", "text": "Compare "}, {"type": "reasoning_text", "text": "tenths."}]}
    summarised = {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "**Comparing**"},
                                                                 {"type": "summary_text", "text": "done"}],
                  "encrypted_content": "gAAAA"}
    out = chat({"input": [{"role": "user", "content": "9.11 or 9.8?"}, thought,
                          {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "9.8"}]},
                          {"role": "user", "content": "sure?"}, summarised, {"role": "user", "content": "well?"},
                          {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA"}]})
    assert out["messages"] == [
        {"role": "user", "content": "9.11 or 9.8?"},
        {"role": "assistant", "content": "9.8", "reasoning_content": "Compare tenths."},
        {"role": "user", "content": "sure?"},
        {"role": "assistant", "content": "", "reasoning_content": "**Comparing**\ndone"},
        {"role": "user", "content": "well?"}]  # nothing readable in the last: nothing sent


def test_calls_one_after_another_join_one_assistant_message():
    out = chat({"input": [{"role": "user", "content": "Paris and Tokyo?"},
                          {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{\"c\":\"Paris\"}"},
                          {"type": "function_call", "call_id": "call_2", "name": "w", "arguments": "{\"c\":\"Tokyo\"}"},
                          {"type": "function_call_output", "call_id": "call_1", "output": "15"},
                          {"type": "function_call_output", "call_id": "call_2",
                           "output": [{"type": "input_text", "text": "2"}, {"type": "input_text", "text": "0"}]}]})
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in out["messages"][1]["tool_calls"]] == ["call_1", "call_2"]
    assert out["messages"][3] == {"role": "tool", "tool_call_id": "call_2", "content": "20"}


def test_input_as_a_string_and_parts_with_images():
    assert chat({"input": "hi", "instructions": "Be brief."})["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    out = chat({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "low"}]}]})
    assert out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "low"}}]}]


@pytest.mark.parametrize("choice, sent", [
    ("auto", "auto"), ("none", "none"), ("required", "required"),
    ({"type": "function", "name": "shell"}, {"type": "function", "function": {"name": "shell"}}),
    ({"type": "custom", "name": "apply_patch"}, {"type": "function", "function": {"name": "apply_patch"}})])
def test_tool_choice(choice, sent):
    tools = [{"type": "function", "name": "shell", "parameters": {"type": "object"}},
             {"type": "custom", "name": "apply_patch"}]
    assert chat({"input": "hi", "tools": tools, "tool_choice": choice})["tool_choice"] == sent


@pytest.mark.parametrize("text, sent", [
    ({"format": {"type": "text"}}, None), ({"verbosity": "low"}, None),
    ({"format": {"type": "json_object"}}, {"type": "json_object"}),
    ({"format": {"type": "json_schema", "name": "codex_output_schema", "schema": {"type": "object"}, "strict": True}},
     {"type": "json_schema", "json_schema": {"name": "codex_output_schema", "schema": {"type": "object"},
                                             "strict": True}})])
def test_text_format_becomes_response_format(text, sent):
    assert chat({"input": "hi", "text": text}).get("response_format") == sent


@pytest.mark.parametrize("dialect, limit, effort", [
    ("openai", "max_completion_tokens", True), ("openrouter", "max_completion_tokens", True),
    ("xai", "max_tokens", True), ("generic-openai", "max_tokens", True),
    ("deepseek", "max_tokens", False), ("dashscope", "max_tokens", False), ("moonshot", "max_tokens", False)])
def test_output_limit_and_reasoning_per_dialect(dialect, limit, effort):
    # OpenAI's reasoning models refuse max_tokens on chat completions, as in messages_over_chat
    out = chat({"input": "hi", "reasoning": {"effort": "high", "summary": "auto"}}, dialect=dialect, max_output=300)
    assert out[limit] == 300 and ({"max_tokens", "max_completion_tokens"} - {limit}).isdisjoint(out)
    assert out.get("reasoning_effort") == ("high" if effort else None)


def test_sampling_tier_and_user():
    out = chat({"input": "hi", "temperature": 0.2, "top_p": 0.8, "service_tier": "flex", "safety_identifier": "s1",
                "user": "u1", "metadata": {"a": "b"}})
    assert (out["temperature"], out["top_p"], out["service_tier"], out["user"]) == (0.2, 0.8, "flex", "s1")
    assert chat({"input": "hi", "user": "u1"})["user"] == "u1" and "metadata" not in out


def test_store_false_is_fine_and_stateless():
    assert chat({"input": "hi", "store": False, "background": False})["messages"] == [{"role": "user", "content": "hi"}]


# --- complete answers ------------------------------------------------------------------------------

def test_a_completion_with_calls_becomes_function_call_items():
    upstream = document("openai-chat-completion-tool-calls.json")
    body = response(upstream, model="public", dialect="openai", custom=set(),
                    request_document={"input": "hi", "tools": [], "temperature": 0.5})
    parsed = Response.model_validate(body)
    assert [(item.type, item.call_id, item.name, json.loads(item.arguments)) for item in parsed.output] == [
        ("function_call", "call_12345xyz", "get_weather", {"location": "Paris, France"}),
        ("function_call", "call_67890abc", "get_weather", {"location": "Bogotá, Colombia"})]
    assert body["status"] == "completed" and body["store"] is False and body["temperature"] == 0.5
    assert body["usage"] == {"input_tokens": 1117, "input_tokens_details": {"cached_tokens": 1024,
                                                                            "cache_write_tokens": 0},
                             "output_tokens": 846, "output_tokens_details": {"reasoning_tokens": 640},
                             "total_tokens": 1963}


def test_reasoning_and_a_length_stop():
    body = response(document("deepseek-chat-completion-reasoning.json"), model="m", dialect="deepseek", custom=set(),
                    request_document={})
    parsed = Response.model_validate(body)
    assert [item.type for item in parsed.output] == ["reasoning", "message"]
    assert parsed.output_text == "9.8 is greater."
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert parsed.usage.input_tokens == 1040 and parsed.usage.input_tokens_details.cached_tokens == 1024
    assert parsed.usage.output_tokens_details.reasoning_tokens == 340


def test_a_custom_tool_call_comes_back_with_its_raw_input():
    upstream = {"id": "c", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "call_p", "type": "function", "function": {"name": "apply_patch",
                                                              "arguments": json.dumps({CUSTOM_INPUT: PATCH})}},
            {"id": "call_q", "type": "function", "function": {"name": "apply_patch", "arguments": "not json"}}]}}]}
    body = response(upstream, model="m", dialect="openai", custom={"apply_patch"}, request_document={})
    Response.model_validate(body)
    assert [(item["type"], item["call_id"], item["input"]) for item in body["output"]] == [
        ("custom_tool_call", "call_p", PATCH), ("custom_tool_call", "call_q", "not json")]


@pytest.mark.parametrize("finish, status, reason", [("stop", "completed", None), ("tool_calls", "completed", None),
                                                    ("length", "incomplete", "max_output_tokens"),
                                                    ("content_filter", "incomplete", "content_filter")])
def test_finish_reasons(finish, status, reason):
    upstream = {"id": "c", "choices": [{"index": 0, "finish_reason": finish,
                                        "message": {"role": "assistant", "content": "x"}}]}
    body = response(upstream, model="m", dialect="openai", custom=set(), request_document={})
    assert body["status"] == status and body["incomplete_details"] == ({"reason": reason} if reason else None)
    chunks = [(None, {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "x"}}]}),
              (None, {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}), (None, "[DONE]")]
    streamed = check_responses(run(events(), chunks, named=True), end=f"response.{status}")
    assert streamed.status == status


# --- streams ---------------------------------------------------------------------------------------

STREAMS = [("openai-chat-stream-text.sse", "openai"), ("openai-chat-stream-parallel-tools.sse", "openai"),
           ("deepseek-chat-stream-reasoning.sse", "deepseek")]
CUTS = {"as sent": lambda chunks: chunks, "one character a chunk": split_chat,
        "four characters a chunk": lambda chunks: split_chat(chunks, 4)}


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("name, dialect", STREAMS)
def test_streams_become_responses_events(name, dialect, cut):
    out = run(events(dialect=dialect), CUTS[cut](sse(name)), named=True)
    final = check_responses(out)
    said = chat_said(sse(name))
    assert final.output_text == said["text"] and final.model == "public" and final.status == "completed"
    assert [(item.call_id, item.name, item.arguments) for item in final.output if item.type == "function_call"] == [
        (call["id"], call["name"], call["arguments"]) for call in said["calls"]]
    reasoning = [item for item in final.output if item.type == "reasoning"]
    assert [item.content[0].text for item in reasoning] == ([said["reasoning"]] if said["reasoning"] else [])
    assert final.usage.total_tokens == sse(name)[-2][1]["usage"]["total_tokens"]


def test_the_event_sequence_is_the_documented_one():
    """A text answer and then a call, as the Responses API streams them (the fixture follows its
    reference): the same events in the same order, and the same final output."""
    documented = sse("responses-stream-text-and-call.sse")
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def delta(body, finish=None):
        return (None, {**chunk, "choices": [{"index": 0, "delta": body, "finish_reason": finish}]})
    upstream = [delta({"role": "assistant", "content": "Checking"}), delta({"content": "."}),
                delta({"tool_calls": [{"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
                                       "function": {"name": "get_weather", "arguments": "{\"location\":"}}]}),
                delta({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris, France\"}"}}]}),
                delta({}, "tool_calls"),
                (None, {**chunk, "choices": [], "usage": {"prompt_tokens": 85, "completion_tokens": 20,
                                                          "total_tokens": 105}}),
                (None, "[DONE]")]
    ours = run(events(dialect="openai"), upstream, named=True)
    assert [name for name, _ in ours] == [name for name, _ in documented]
    mine, theirs = check_responses(ours), check_responses(documented)
    assert mine.output_text == theirs.output_text
    assert [(i.type, getattr(i, "arguments", None)) for i in mine.output] == [
        (i.type, getattr(i, "arguments", None)) for i in theirs.output]
    assert mine.usage == theirs.usage


def test_a_custom_tool_call_streams_its_input_when_whole():
    arguments = json.dumps({CUSTOM_INPUT: PATCH})
    upstream = [(None, {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
        {"index": 0, "id": "call_p", "type": "function", "function": {"name": "apply_patch", "arguments": ""}}]}}]})]
    upstream += [(None, {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": piece}}]}}]}) for piece in arguments]
    upstream += [(None, {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
                 (None, "[DONE]")]
    out = run(events(custom={"apply_patch"}), upstream, named=True)
    final = check_responses(out)
    (item,) = final.output
    assert (item.type, item.call_id, item.name, item.input) == ("custom_tool_call", "call_p", "apply_patch", PATCH)
    names = [name for name, _ in out]
    assert "response.function_call_arguments.delta" not in names
    assert names.count("response.custom_tool_call_input.delta") == 1


def test_an_error_chunk_fails_the_response():
    upstream = sse("openai-chat-stream-text.sse")[:2] + [(None, {"error": {"message": "overloaded", "type": "x"}})]
    out = run(events(), upstream, named=True)
    final = check_responses(out, end="response.failed")
    assert final.status == "failed" and final.error.message == "overloaded"
    assert run(events(), [(None, {"error": "boom"})], named=True)[-1][0] == "response.failed"


def test_interleaved_tool_arguments_are_refused_mid_stream():
    def call(index, **fields):
        return (None, {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": index, **fields}]}}]})
    translation = events()
    translation.feed(*call(0, id="call_a", function={"name": "a", "arguments": "{"}))
    translation.feed(*call(1, id="call_b", function={"name": "b", "arguments": "{"}))
    with pytest.raises(ApiError) as refused:
        translation.feed(*call(0, function={"arguments": "}"}))
    assert refused.value.status == 400


def test_the_request_settings_are_echoed_back():
    requested = {"instructions": "Be brief.", "max_output_tokens": 100, "temperature": 0.3, "tool_choice": "none",
                 "tools": [{"type": "function", "name": "f", "parameters": {}}], "metadata": {"k": "v"},
                 "parallel_tool_calls": False}
    final = check_responses(run(events(request_document=requested), sse("openai-chat-stream-text.sse"), named=True))
    assert (final.instructions, final.max_output_tokens, final.temperature, final.tool_choice, final.metadata,
            final.parallel_tool_calls, final.store) == ("Be brief.", 100, 0.3, "none", {"k": "v"}, False, False)


# --- Responses over an Anthropic upstream: two translations in a row ---------------------------------

ANTHROPIC = UpstreamInfo(1, "anthropic", "anthropic", None, None, "anthropic")
DEEPSEEK = UpstreamInfo(2, "deepseek", "openai", None, None, "deepseek", chat_only=True)
OPENAI = UpstreamInfo(3, "openai", "openai", None, None, "openai")


def test_the_registry():
    assert [upstream_route(route, "openai") for route in (CHAT, RESPONSES, MESSAGES, COUNT_TOKENS, EMBEDDINGS)] == [
        CHAT, RESPONSES, CHAT, ESTIMATE, EMBEDDINGS]
    assert [upstream_route(route, "openai", True) for route in (CHAT, RESPONSES, MESSAGES)] == [CHAT, CHAT, CHAT]
    assert [upstream_route(route, "anthropic") for route in (CHAT, RESPONSES, MESSAGES, COUNT_TOKENS, EMBEDDINGS)] == [
        MESSAGES, MESSAGES, MESSAGES, COUNT_TOKENS, None]
    call = Call("public", "anthropic", 4000)
    assert isinstance(translator(CHAT, ANTHROPIC, call), ChatOverMessages)
    assert isinstance(translator(MESSAGES, OPENAI, call), MessagesOverChat)
    assert isinstance(translator(RESPONSES, DEEPSEEK, call), ResponsesOverChat)
    assert isinstance(translator(RESPONSES, ANTHROPIC, call), Chained)
    assert translator(RESPONSES, OPENAI, call) is None and translator(CHAT, OPENAI, call) is None
    assert translator(COUNT_TOKENS, OPENAI, call) is None and translator(MESSAGES, ANTHROPIC, call) is None


def test_a_codex_request_reaches_anthropic_as_messages():
    chained = translator(RESPONSES, ANTHROPIC, Call("public", "anthropic", 8000))
    out = chained.request(document("codex-request.json"))
    assert out["system"][0]["text"].startswith("You are Codex") and len(out["system"]) == 2
    assert [message["role"] for message in out["messages"]] == ["user", "assistant", "user", "assistant", "user",
                                                               "assistant", "user"]
    apply_patch = out["messages"][1]["content"][0]
    assert apply_patch == {"type": "tool_use", "id": "call_8sK2pQm1Vw7XcR4tYb0nLd3e", "name": "apply_patch",
                           "input": {CUSTOM_INPUT: PATCH}}
    assert out["messages"][2]["content"][0]["type"] == "tool_result"
    assert [tool["name"] for tool in out["tools"]] == ["shell", "apply_patch"]
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4096}  # reasoning effort medium
    assert out["max_tokens"] == 8000 and out["stream"] is True


@pytest.mark.parametrize("cut", ["as sent", "one character a delta"])
@pytest.mark.parametrize("name", ["anthropic-stream-text.sse", "anthropic-stream-tool-use.sse",
                                  "anthropic-stream-thinking.sse"])
def test_anthropic_streams_become_responses_events(name, cut):
    chained = translator(RESPONSES, ANTHROPIC, Call("public", "anthropic", 8000))
    chained.request({"model": "claude", "input": "hi"})
    upstream = sse(name) if cut == "as sent" else split_anthropic(sse(name))
    final = check_responses(run(chained.events(), upstream, named=True))
    blocks = anthropic_said(sse(name))
    assert final.output_text == "".join(block[1] for block in blocks if block[0] == "text")
    assert [(item.call_id, item.name, item.arguments) for item in final.output if item.type == "function_call"] == [
        block[1:] for block in blocks if block[0] == "tool_use"]
    start = sse(name)[0][1]["message"]["usage"]
    assert final.usage.input_tokens == (start["input_tokens"] + start["cache_creation_input_tokens"]
                                        + start["cache_read_input_tokens"])
    assert final.usage.input_tokens_details.cached_tokens == start["cache_read_input_tokens"]


def test_an_anthropic_answer_becomes_a_response():
    chained = translator(RESPONSES, ANTHROPIC, Call("public", "anthropic", 8000))
    chained.request({"model": "claude", "input": "hi", "tools": [{"type": "function", "name": "get_weather",
                                                                    "parameters": {"type": "object"}}]})
    body = chained.response(document("anthropic-message-tool-use.json"))
    parsed = Response.model_validate(body)
    assert parsed.output_text == "I'll check the current weather in both cities."
    assert [json.loads(item.arguments)["location"] for item in parsed.output if item.type == "function_call"] == [
        "San Francisco, CA", "東京"]
    assert parsed.usage.input_tokens == 12146 and parsed.usage.output_tokens == 503


def test_a_refusal_is_said_as_text():
    refusal = "I'm sorry, I can't help with that."
    upstream = {"id": "c", "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": None, "refusal": refusal}}]}
    body = response(upstream, model="m", dialect="openai", custom=set(), request_document={})
    assert Response.model_validate(body).output_text == refusal
    chunks = [(None, {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "refusal": refusal[:9]}}]}),
              (None, {"id": "c", "choices": [{"index": 0, "delta": {"refusal": refusal[9:]}}]}),
              (None, {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), (None, "[DONE]")]
    assert check_responses(run(events(), chunks, named=True)).output_text == refusal


def test_an_anthropic_error_mid_stream_fails_the_response():
    chained = translator(RESPONSES, ANTHROPIC, Call("public", "anthropic", 8000))
    chained.request({"model": "claude", "input": "hi"})
    final = check_responses(run(chained.events(), sse("anthropic-stream-error.sse"), named=True),
                            end="response.failed")
    assert final.error.message == "Overloaded"


def test_codex_gets_a_stream_its_sdk_reads_with_its_request_echoed():
    translation = ResponsesOverChat(Call("public", "deepseek", 8000))
    recorded = document("codex-request.json")
    translation.request(recorded)
    final = check_responses(run(translation.events(), sse("deepseek-chat-stream-reasoning.sse"), named=True))
    assert [tool.name for tool in final.tools] == ["shell", "apply_patch"]
    assert final.parallel_tool_calls is False and final.instructions == recorded["instructions"]
