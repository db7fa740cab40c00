"""What cannot be carried is refused before anything is sent: a 400 whose message names the field.

`refuse` (code unsupported_by_upstream) is for what the upstream's protocol cannot express; `need`
(no code) for a field of the wrong type: a number, null, a list where an object belongs. Neither
ever crashes with anything but an ApiError.
"""
import pytest

from proxy.errors import ApiError
from proxy.translate import chat_over_messages, messages_over_chat, responses_over_chat

UNSUPPORTED = "unsupported_by_upstream"
TEXT = {"type": "text", "text": "hi"}
TOOL = {"name": "f", "input_schema": {"type": "object"}}
PLAIN = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def refused(translate, body: dict) -> ApiError:
    with pytest.raises(ApiError) as caught:
        translate(body)
    assert caught.value.status == 400
    return caught.value


def messages_over(body, dialect="openai"):
    return messages_over_chat.request({"model": "m", "messages": [{"role": "user", "content": [TEXT]}], **body},
                                      dialect=dialect, max_output=100)


def chat_over(body):
    return chat_over_messages.request({"model": "m", "messages": [{"role": "user", "content": "hi"}], **body},
                                      max_output=100)


def responses_over(body):
    return responses_over_chat.request({"model": "m", "input": "hi", **body}, dialect="openai", max_output=100)


def user(*blocks):
    return {"messages": [{"role": "user", "content": list(blocks)}]}


def turns(assistant, then=None):
    return {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": assistant}]
            + ([then] if then else [])}


# --- Messages -> chat --------------------------------------------------------------------------------

MESSAGES_UNSUPPORTED = [
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    (user({"type": "image", "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}}),
     "messages[0].content[0]"),
    (user({"type": "document", "source": {"type": "file", "file_id": "file_01"}}), "messages[0].content[0]"),
    (user({"type": "search_result", "source": "https://x", "title": "t", "content": [TEXT]}), "messages[0].content[0]"),
    (user({"type": "tool_result", "tool_use_id": "toolu_1", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}}]}),
     "messages[0].content[0].content[0]"),
    (turns([{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}]),
     "messages[1].content[0]"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}, "tools[0]"),
    ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0]"),
    ({"tools": [{"name": "no_schema"}]}, "tools[0]"),
    ({"tools": [TOOL], "tool_choice": {"type": "bogus"}}, "tool_choice.type"),
]


@pytest.mark.parametrize("body, field", MESSAGES_UNSUPPORTED, ids=[f for _, f in MESSAGES_UNSUPPORTED])
def test_messages_unsupported(body, field):
    error = refused(messages_over, body)
    assert field in error.message and error.code == UNSUPPORTED


def test_a_pdf_for_an_upstream_without_files():
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
    error = refused(lambda body: messages_over(body, dialect="deepseek"), user(pdf))
    assert "messages[0].content[0]" in error.message and error.code == UNSUPPORTED


MESSAGES_WRONG = [
    ({"messages": {"role": "user"}}, "messages"),
    ({"messages": None}, "messages"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    (user(None), "messages[0].content[0]"),
    (user({"type": "text", "text": 5}), "messages[0].content[0].text"),
    (user({"type": "image", "source": None}), "messages[0].content[0].source"),
    (user({"type": "image", "source": [1]}), "messages[0].content[0].source"),
    (user({"type": "image", "source": {"type": "base64", "data": "iVBO"}}), "messages[0].content[0].source"),
    (user({"type": "image", "source": {"type": "url", "url": 5}}), "messages[0].content[0].source.url"),
    (user({"type": "document", "source": "text"}), "messages[0].content[0].source"),
    (user({"type": "tool_result", "content": "x"}), "messages[0].content[0].tool_use_id"),
    (user({"type": "tool_result", "tool_use_id": "t", "content": 5}), "messages[0].content[0].content"),
    (user({"type": "tool_result", "tool_use_id": "t", "content": [5]}), "messages[0].content[0].content[0]"),
    (turns([5]), "messages[1].content[0]"),
    (turns([{"type": "text", "text": None}]), "messages[1].content[0].text"),
    (turns([{"type": "tool_use", "name": "f", "input": {}}]), "messages[1].content[0]"),
    (turns([{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]), "messages[1].content[0].input"),
    ({"system": 5}, "system"),
    ({"system": {"type": "text", "text": "x"}}, "system"),
    ({"system": [{"type": "text"}]}, "system[]"),
    ({"tools": {"name": "f"}}, "tools"),
    ({"tools": ["f"]}, "tools[0]"),
    ({"tools": [{"name": 5, "input_schema": {}}]}, "tools[0].name"),
    ({"tools": [{"name": "f", "input_schema": [1]}]}, "tools[0].input_schema"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({"thinking": "enabled"}, "thinking"),
    ({"thinking": [1]}, "thinking"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"stop_sequences": ["END", 5]}, "stop_sequences"),
    ({"service_tier": 5}, "service_tier"),
    ({"service_tier": ["auto"]}, "service_tier"),
]


@pytest.mark.parametrize("body, field", MESSAGES_WRONG, ids=[f for _, f in MESSAGES_WRONG])
def test_messages_wrong_types(body, field):
    error = refused(messages_over, body)
    assert error.message.startswith(f"{field} must be") and error.code is None, error.message


# --- chat -> Messages --------------------------------------------------------------------------------

CHAT_UNSUPPORTED = [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "logprobs"),
    ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
    ({"modalities": ["audio"]}, "modalities"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG",
                                                                                        "format": "wav"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": "}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "tools[0]"),
    ({"tools": [PLAIN], "tool_choice": "bogus"}, "tool_choice"),
    ({"tools": [PLAIN], "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}},
     "tool_choice"),
    ({"response_format": {"type": "bogus"}}, "response_format.type"),
    ({"tools": [PLAIN], "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}},
     "response_format"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"service_tier": ["auto"]}, "service_tier"),
]


@pytest.mark.parametrize("body, field", CHAT_UNSUPPORTED, ids=[f for _, f in CHAT_UNSUPPORTED])
def test_chat_unsupported(body, field):
    error = refused(chat_over, body)
    assert field in error.message and error.code == UNSUPPORTED, error.message


CHAT_WRONG = [
    ({"messages": "hi"}, "messages"),
    ({"messages": [None]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "system", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "content": "x", "tool_calls": {"id": "c"}}]}, "messages[0].tool_calls"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]},
     "messages[0].tool_calls[0]"),
    ({"messages": [{"role": "assistant", "tool_calls": [None]}]}, "messages[0].tool_calls[0]"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "tool", "tool_call_id": "c", "content": 5}]}, "messages[0].content"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": 5}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]}, "tools[0].function.parameters"),
    ({"response_format": "json"}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": [1]}}, "response_format.json_schema"),
]


@pytest.mark.parametrize("body, field", CHAT_WRONG, ids=[f for _, f in CHAT_WRONG])
def test_chat_wrong_types(body, field):
    error = refused(chat_over, body)
    assert error.message.startswith(f"{field} must be") and error.code is None, error.message


# --- Responses -> chat -------------------------------------------------------------------------------

RESPONSES_UNSUPPORTED = [
    ({"store": True}, "store"),
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"conversation": "conv_123"}, "conversation"),
    ({"conversation": {"id": "conv_123"}}, "conversation"),
    ({"prompt": {"id": "pmpt_123", "version": "2"}}, "prompt"),
    ({"background": True}, "background"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-abc"}]}]},
     "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-abc"}]}]},
     "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "input[0].content[0]"),
    ({"input": [{"type": "item_reference", "id": "msg_123"}]}, "input[0]"),
    ({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]}, "input[0]"),
    ({"tools": [{"type": "bogus", "name": "x"}]}, "tools[0]"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "web_search"}}, "tool_choice"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": "bogus"}, "tool_choice"),
    ({"text": {"format": {"type": "bogus"}}}, "text.format.type"),
]


@pytest.mark.parametrize("body, field", RESPONSES_UNSUPPORTED, ids=[f for _, f in RESPONSES_UNSUPPORTED])
def test_responses_unsupported(body, field):
    error = refused(responses_over, body)
    assert field in error.message and error.code == UNSUPPORTED, error.message


def test_hosted_tools_are_left_out_and_a_store_of_false_is_fine():
    out, _ = responses_over_chat.request({"model": "m", "input": "hi", "store": False, "tools": [
        {"type": "web_search"}, {"type": "function", "name": "f", "parameters": {"type": "object"}}]},
        dialect="openai", max_output=100)
    assert [tool["function"]["name"] for tool in out["tools"]] == ["f"]
    only_hosted, _ = responses_over_chat.request({"model": "m", "input": "hi", "tools": [{"type": "web_search"}],
                                                  "tool_choice": "auto"}, dialect="openai", max_output=100)
    assert "tools" not in only_hosted


RESPONSES_WRONG = [
    ({"input": 5}, "input"),
    ({"input": {"role": "user"}}, "input"),
    ({"input": ["hi"]}, "input[0]"),
    ({"instructions": ["x"]}, "instructions"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ({"input": [{"role": "user", "content": [5]}]}, "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": None}]}]}, "input[0].content[0].text"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0]"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]}, "input[0].arguments"),
    ({"input": [{"type": "custom_tool_call", "call_id": "c", "name": "f", "input": 5}]}, "input[0].input"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]}, "input[0].output"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [None]}, "tools[0]"),
    ({"tools": [{"type": "function", "name": 5}]}, "tools[0].name"),
    ({"tools": [{"type": "custom", "name": None}]}, "tools[0].name"),
    ({"text": "json"}, "text"),
    ({"text": {"format": "json"}}, "text.format"),
]


@pytest.mark.parametrize("body, field", RESPONSES_WRONG, ids=[f for _, f in RESPONSES_WRONG])
def test_responses_wrong_types(body, field):
    error = refused(responses_over, body)
    assert error.message.startswith(f"{field} must be") and error.code is None, error.message


# --- every field, every wrong kind: a 400 or a translation, never a crash ------------------------------

ODD = [5, 2.5, None, True, "x", [], [1], {}, {"type": None}, [None]]
FIELDS = {
    messages_over: ["messages", "system", "tools", "tool_choice", "thinking", "stop_sequences", "metadata",
                    "service_tier", "temperature", "top_p", "stream", "max_tokens", "output_config"],
    chat_over: ["messages", "tools", "tool_choice", "parallel_tool_calls", "response_format", "temperature", "top_p",
                "stop", "reasoning_effort", "user", "service_tier", "stream", "n", "logprobs", "audio", "modalities"],
    responses_over: ["input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning",
                     "temperature", "top_p", "service_tier", "user", "safety_identifier", "store", "stream",
                     "previous_response_id", "background", "metadata", "include"],
}


@pytest.mark.parametrize("translate", FIELDS, ids=lambda f: f.__name__)
def test_every_field_with_every_kind_of_value(translate):
    tools = {messages_over: [TOOL], chat_over: [PLAIN], responses_over: [{"type": "function", "name": "f"}]}
    for field in FIELDS[translate]:
        for value in ODD:
            body = {"tools": tools[translate], field: value} if field == "tool_choice" else {field: value}
            try:
                translate(body)
            except ApiError as error:
                assert error.status == 400
