"""The demo model speaks each API exactly as its provider does, to every client.

Every body and stream event of every route it answers is checked three ways: strictly against the
official SDKs' own types (with no field they do not know), against what the Vercel AI SDK's
schemas demand (its zod schemas reject what the official SDKs let pass, such as a text block in
Anthropic's message_start), and against the published event order and framing. Then through the
real gateway with a plain HTTP client and a strict SSE parser, and with the Vercel AI SDK itself
in Node (tests/clients/vercel_ai.mjs), its results checked against what the gateway billed.
"""
import base64
import json
import os
import shutil
import struct
import subprocess
import typing
from pathlib import Path

import pytest
import requests
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel

from proxy.upstreams.echo import EchoUpstream
from tests.proxy.conftest import wait_for_records

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
PROMPT = "one two three"
WORDS = len(PROMPT.split())


# -- reading what the model sent ---------------------------------------------------------------

def parse_sse(raw: bytes) -> list[tuple[typing.Optional[str], str]]:
    """(event name, data) of each event; fails on anything a strict SSE reader would not expect."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), "the stream does not end with a complete event"
    events = []
    for block in text[:-2].split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            field, sep, value = line.partition(": ")
            assert sep and field in ("event", "data"), f"unexpected SSE line {line!r}"
            if field == "event":
                assert name is None, f"two event names in one event: {block!r}"
                name = value
            else:
                data.append(value)
        assert data, f"an event without data: {block!r}"
        events.append((name, "\n".join(data)))
    return events


def echo(route: str, body: dict, *, stream: bool = False, max_output: int = 100):
    """Call the demo model directly: the parsed JSON body, or the stream's (name, data) events."""
    response = EchoUpstream().send(route=route, body={"model": "echo-1", **body}, stream=stream,
                                   max_output=max_output)
    raw = b"".join(response.chunks())
    if stream:
        assert (response.status, response.content_type) == (200, "text/event-stream")
        return parse_sse(raw)
    assert response.content_type == "application/json"
    return json.loads(raw)


def named_events(events) -> list[dict]:
    """Anthropic and Responses streams: every event is named, and its name is its data's type."""
    parsed = []
    for name, data in events:
        document = json.loads(data)
        assert name == document["type"], f"event name {name!r} for data of type {document['type']!r}"
        parsed.append(document)
    return parsed


def chat_chunks(events) -> list[dict]:
    """OpenAI chat streams: unnamed JSON chunks, then data: [DONE]."""
    assert all(name is None for name, _ in events), "OpenAI chat streams do not name their events"
    assert events[-1][1] == "[DONE]"
    return [json.loads(data) for _, data in events[:-1]]


# -- the official SDKs' types, strictly ----------------------------------------------------------

def _by_type(union) -> dict[str, type[BaseModel]]:
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    return {typing.get_args(member.model_fields["type"].annotation)[0]: member for member in typing.get_args(union)}


RESPONSE_EVENTS = _by_type(ResponseStreamEvent)
ANTHROPIC_EVENTS = _by_type(RawMessageStreamEvent)


def _unknown_fields(value, path: str = "") -> list[str]:
    if isinstance(value, BaseModel):
        unknown = [f"{path}.{name}" for name in (value.model_extra or {})]
        for name in type(value).model_fields:
            unknown += _unknown_fields(getattr(value, name), f"{path}.{name}")
        return unknown
    if isinstance(value, (list, tuple)):
        return [u for i, item in enumerate(value) for u in _unknown_fields(item, f"{path}[{i}]")]
    return []


def sdk_strict(model: type[BaseModel], document: dict) -> BaseModel:
    """Validate with the SDK's type in strict mode and refuse fields the type does not declare."""
    parsed = model.model_validate(document, strict=True)
    assert _unknown_fields(parsed) == [], f"fields {model.__name__} does not know"
    return parsed


# -- what the Vercel AI SDK's schemas demand (@ai-sdk/anthropic and @ai-sdk/openai) --------------
# Transcribed from their zod schemas for the events the demo model sends; the test that runs the
# SDK itself (below) is the final word, this says which field is wrong without Node.

def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def vercel_anthropic_event(event: dict) -> None:
    kind = event["type"]
    if kind == "message_start":
        message = event["message"]
        # message.content may only pre-populate deferred tool calls: a text block is rejected.
        assert all(block.get("type") == "tool_use" for block in message.get("content") or []), \
            "message_start.message.content must be empty (only tool_use blocks are accepted)"
        assert _number(message["usage"]["input_tokens"])
        for field in ("id", "model", "role", "stop_reason"):
            assert message.get(field) is None or isinstance(message[field], str)
    elif kind == "content_block_start":
        assert _number(event["index"])
        assert event["content_block"]["type"] == "text" and isinstance(event["content_block"]["text"], str)
    elif kind == "content_block_delta":
        assert _number(event["index"])
        assert event["delta"]["type"] == "text_delta" and isinstance(event["delta"]["text"], str)
    elif kind == "content_block_stop":
        assert _number(event["index"])
    elif kind == "message_delta":
        assert _number(event["usage"]["output_tokens"])
        assert event["delta"].get("stop_reason") is None or isinstance(event["delta"]["stop_reason"], str)
    else:
        assert kind in ("message_stop", "ping"), kind


def vercel_anthropic_body(body: dict) -> None:
    assert body["type"] == "message"
    assert all(block["type"] == "text" and isinstance(block["text"], str) for block in body["content"])
    assert _number(body["usage"]["input_tokens"]) and _number(body["usage"]["output_tokens"])


def vercel_responses_event(event: dict) -> None:
    kind = event["type"]
    if kind == "response.created":
        response = event["response"]
        assert isinstance(response["id"], str) and isinstance(response["model"], str)
        assert _number(response["created_at"])
    elif kind in ("response.output_item.added", "response.output_item.done"):
        assert _number(event["output_index"])
        assert event["item"]["type"] == "message" and isinstance(event["item"]["id"], str)
    elif kind == "response.output_text.delta":
        assert isinstance(event["item_id"], str) and isinstance(event["delta"], str)
    elif kind in ("response.completed", "response.incomplete"):
        vercel_responses_usage(event["response"])


def vercel_responses_usage(response: dict) -> None:
    usage = response["usage"]
    assert _number(usage["input_tokens"]) and _number(usage["output_tokens"])
    assert response["incomplete_details"] is None or isinstance(response["incomplete_details"]["reason"], str)


def valid_responses_event(event: dict) -> None:
    sdk_strict(RESPONSE_EVENTS[event["type"]], event)
    vercel_responses_event(event)


def valid_anthropic_event(event: dict) -> None:
    vercel_anthropic_event(event)
    if event["type"] == "ping":  # the SDK skips pings by their event name; it has no type for them
        assert event == {"type": "ping"}
    else:
        sdk_strict(ANTHROPIC_EVENTS[event["type"]], event)


# -- OpenAI chat completions --------------------------------------------------------------------

def chat_body(messages=None, **fields) -> dict:
    return {"messages": messages or [{"role": "user", "content": PROMPT}], **fields}


@pytest.mark.parametrize("fields, max_output, text, output, finish", [
    ({}, 100, "Echo: one two three", 4, "stop"),
    ({}, 2, "Echo: one", 2, "length"),
    ({"stop": "two"}, 100, "Echo: one ", 3, "stop"),                          # "Echo:", " one", " "
    ({"stop": ["zzz", "three", " two"]}, 100, "Echo: one", 2, "stop"),  # the first one produced wins
])
def test_chat_completion(fields, max_output, text, output, finish):
    body = echo("chat", chat_body(**fields), max_output=max_output)
    sdk_strict(ChatCompletion, body)
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "echo-1"
    [choice] = body["choices"]
    assert choice == {"index": 0, "logprobs": None, "finish_reason": finish,
                      "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []}}
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (WORDS, output,
                                                                                           WORDS + output)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0


def test_chat_n_choices_are_all_counted():
    """OpenAI answers `n` with n choices and counts the output of all of them."""
    body = echo("chat", chat_body(n=3))
    sdk_strict(ChatCompletion, body)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in body["choices"]} == {"Echo: one two three"}
    assert body["usage"]["completion_tokens"] == 3 * 4


def test_chat_n_out_of_range_is_refused_as_openai_does():
    response = EchoUpstream().send(route="chat", body=chat_body(model="echo-1", n=0), stream=False, max_output=9)
    assert response.status == 400
    assert json.loads(response.read(10_000))["error"]["param"] == "n"


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("n, max_output, finish", [(1, 100, "stop"), (2, 100, "stop"), (1, 2, "length")])
def test_chat_stream(include_usage, n, max_output, finish):
    body = chat_body(n=n, stream=True, **({"stream_options": {"include_usage": True}} if include_usage else {}))
    chunks = chat_chunks(echo("chat", body, stream=True, max_output=max_output))
    for chunk in chunks:
        sdk_strict(ChatCompletionChunk, chunk)
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        (chunks[0]["id"], "chat.completion.chunk", chunks[0]["created"], "echo-1")}
    assert chunks[0]["id"].startswith("chatcmpl-")
    if include_usage:
        # OpenAI: "usage": null on every chunk, then one chunk without choices that carries it.
        *chunks, last = chunks
        assert last["choices"] == [] and all(c["usage"] is None for c in chunks)
        expected = n * (max_output if finish == "length" else 4)
        assert (last["usage"]["prompt_tokens"], last["usage"]["completion_tokens"]) == (WORDS, expected)
    else:
        assert all("usage" not in c for c in chunks)
    texts, finishes = [""] * n, [[] for _ in range(n)]
    for chunk in chunks:
        [choice] = chunk["choices"]
        assert choice["logprobs"] is None
        if choice["finish_reason"] is None:
            texts[choice["index"]] += choice["delta"].get("content") or ""
        else:
            assert choice["delta"] == {}
            finishes[choice["index"]].append(choice["finish_reason"])
    first = {c["choices"][0]["index"]: c["choices"][0]["delta"] for c in reversed(chunks)}
    assert all(delta == {"role": "assistant", "content": "", "refusal": None} for delta in first.values())
    assert texts == ["Echo: one two three" if finish == "stop" else "Echo: one"] * n
    assert finishes == [[finish]] * n


# -- OpenAI responses ---------------------------------------------------------------------------

def check_response(response: dict, *, status: str, text: str, output: int) -> None:
    sdk_strict(Response, response)
    assert response["id"].startswith("resp_") and response["object"] == "response"
    assert (response["status"], response["model"], response["error"]) == (status, "echo-1", None)
    assert response["incomplete_details"] == ({"reason": "max_output_tokens"} if status == "incomplete" else None)
    [item] = response["output"]
    assert item["id"].startswith("msg_")
    assert (item["type"], item["role"], item["status"]) == ("message", "assistant", status)
    assert item["content"] == [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    assert (response["tools"], response["tool_choice"], response["parallel_tool_calls"]) == ([], "auto", True)
    usage = response["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (WORDS, output, WORDS + output)
    assert usage["input_tokens_details"]["cached_tokens"] == usage["output_tokens_details"]["reasoning_tokens"] == 0
    vercel_responses_usage(response)


@pytest.mark.parametrize("max_output, status, text", [(100, "completed", "Echo: one two three"),
                                                      (2, "incomplete", "Echo: one")])
def test_response(max_output, status, text):
    body = echo("responses", {"input": PROMPT, "max_output_tokens": max_output}, max_output=max_output)
    check_response(body, status=status, text=text, output=len(text.split()))
    assert body["max_output_tokens"] == max_output


@pytest.mark.parametrize("max_output, status, text", [(100, "completed", "Echo: one two three"),
                                                      (2, "incomplete", "Echo: one")])
def test_response_stream(max_output, status, text):
    events = named_events(echo("responses", {"input": [{"role": "user", "content": [
        {"type": "input_text", "text": PROMPT}]}], "stream": True}, stream=True, max_output=max_output))
    for event in events:
        valid_responses_event(event)
    tokens = len(text.split())
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * tokens, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", f"response.{status}"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events[:2]:
        assert (event["response"]["status"], event["response"]["output"], event["response"]["usage"]) == (
            "in_progress", [], None)
    final = events[-1]["response"]
    check_response(final, status=status, text=text, output=tokens)
    assert {e["response"]["id"] for e in (events[0], events[1], events[-1])} == {final["id"]}
    item_id = final["output"][0]["id"]
    added, part_added = events[2], events[3]
    assert added["item"] == {"id": item_id, "type": "message", "status": "in_progress", "content": [],
                             "role": "assistant"}
    assert part_added["part"] == {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    assert {(e["item_id"], e["output_index"], e["content_index"]) for e in events[3:-2]} == {(item_id, 0, 0)}
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == text
    assert events[-4]["text"] == text and events[-3]["part"]["text"] == text
    assert events[-2]["item"] == final["output"][0]


# -- OpenAI embeddings --------------------------------------------------------------------------

@pytest.mark.parametrize("given, tokens", [("some words here", 3), (["a b", "c"], 3), ([5, 6, 7, 8], 4),
                                           ([[5, 6], [7]], 3)])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(given, tokens, encoding):
    body = echo("embeddings", {"input": given, "encoding_format": encoding, "dimensions": 5})
    sdk_strict(CreateEmbeddingResponse, decoded(body))
    inputs = 1 if isinstance(given, str) or isinstance(given[0], int) else len(given)
    assert (body["object"], body["model"], [d["index"] for d in body["data"]]) == ("list", "echo-1",
                                                                                 list(range(inputs)))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert all(item["object"] == "embedding" for item in body["data"])
    assert all(isinstance(item["embedding"], str if encoding == "base64" else list) for item in body["data"])
    assert all(len(item["embedding"]) == 5 for item in decoded(body)["data"])


def decoded(body: dict) -> dict:
    """Base64 embeddings as the SDKs decode them: little-endian float32."""
    def vector(embedding):
        if isinstance(embedding, list):
            return embedding
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return {**body, "data": [{**item, "embedding": vector(item["embedding"])} for item in body["data"]]}


# -- Anthropic messages -------------------------------------------------------------------------

def messages_body(**fields) -> dict:
    return {"max_tokens": 100, "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
            **fields}


@pytest.mark.parametrize("fields, max_output, text, output, stop_reason, stop_sequence", [
    ({}, 100, "Echo: one two three", 4, "end_turn", None),
    ({}, 2, "Echo: one", 2, "max_tokens", None),
    ({"stop_sequences": ["three", "two"]}, 100, "Echo: one ", 3, "stop_sequence", "two"),
])
def test_message(fields, max_output, text, output, stop_reason, stop_sequence):
    body = echo("messages", messages_body(**fields), max_output=max_output)
    sdk_strict(Message, body)
    vercel_anthropic_body(body)
    assert body["id"].startswith("msg_")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "echo-1")
    assert body["content"] == [{"type": "text", "text": text}]
    assert (body["stop_reason"], body["stop_sequence"]) == (stop_reason, stop_sequence)
    usage = body["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["cache_creation_input_tokens"],
            usage["cache_read_input_tokens"]) == (WORDS, output, 0, 0)


@pytest.mark.parametrize("fields, max_output, text, stop_reason", [
    ({}, 100, "Echo: one two three", "end_turn"),
    ({}, 2, "Echo: one", "max_tokens"),
    ({"stop_sequences": [" three"]}, 100, "Echo: one two", "stop_sequence"),
])
def test_message_stream(fields, max_output, text, stop_reason):
    events = named_events(echo("messages", messages_body(stream=True, **fields), stream=True, max_output=max_output))
    for event in events:
        valid_anthropic_event(event)
    tokens = len(text.split())
    assert [e["type"] for e in events] == ["message_start", "content_block_start", "ping",
                                           *["content_block_delta"] * tokens, "content_block_stop",
                                           "message_delta", "message_stop"]
    message = events[0]["message"]
    assert message["id"].startswith("msg_")
    assert (message["content"], message["stop_reason"], message["stop_sequence"]) == ([], None, None)
    assert (message["usage"]["input_tokens"], message["usage"]["cache_read_input_tokens"]) == (WORDS, 0)
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == text
    assert {e["index"] for e in events[1:-2] if "index" in e} == {0}
    delta = events[-2]
    assert delta["delta"] == {"stop_reason": stop_reason,
                              "stop_sequence": fields["stop_sequences"][0] if fields else None}
    assert (delta["usage"]["output_tokens"], delta["usage"]["input_tokens"]) == (tokens, WORDS)
    assert events[-1] == {"type": "message_stop"}


def test_count_tokens():
    body = echo("count_tokens", messages_body(system="be brief"))
    assert body == {"input_tokens": WORDS + 2}
    sdk_strict(MessageTokensCount, body)


# -- through the gateway, with a plain HTTP client ------------------------------------------------

ROUTE_CALLS = {
    "chat": ("/v1/chat/completions", chat_body()),
    "responses": ("/v1/responses", {"input": PROMPT}),
    "messages": ("/v1/messages", messages_body()),
}


def post(gateway: str, key: str, path: str, body: dict) -> requests.Response:
    headers = ({"x-api-key": key, "anthropic-version": "2023-06-01"} if path.startswith("/v1/messages")
               else {"Authorization": f"Bearer {key}"})
    return requests.post(f"{gateway}{path}", json={"model": "echo-1", **body}, headers=headers, timeout=30)


@pytest.mark.parametrize("route", ["chat", "responses", "messages"])
@pytest.mark.parametrize("stream", [False, True])
def test_every_route_through_the_gateway(gateway, key, route, stream):
    path, body = ROUTE_CALLS[route]
    response = post(gateway, key, path, {**body, "stream": stream})
    assert response.status_code == 200, response.text
    if not stream:
        assert response.headers["Content-Type"].startswith("application/json")
        document = response.json()
        if route == "chat":
            sdk_strict(ChatCompletion, document)
        elif route == "responses":
            check_response(document, status="completed", text="Echo: one two three", output=4)
        else:
            sdk_strict(Message, document)
            vercel_anthropic_body(document)
    else:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(response.content)
        if route == "chat":
            for chunk in chat_chunks(events):
                sdk_strict(ChatCompletionChunk, chunk)
        else:
            for event in named_events(events):
                (valid_responses_event if route == "responses" else valid_anthropic_event)(event)
    [record] = wait_for_records(1)
    assert (record.status, record.route, record.streamed, record.input_tokens, record.output_tokens,
            record.usage_estimated) == ("ok", route, stream, WORDS, 4, False)


def test_embeddings_and_count_tokens_through_the_gateway(gateway, key):
    response = post(gateway, key, "/v1/embeddings", {"input": ["a b", "c"], "encoding_format": "base64"})
    sdk_strict(CreateEmbeddingResponse, decoded(response.json()))
    counted = post(gateway, key, "/v1/messages/count_tokens", {"messages": [{"role": "user", "content": PROMPT}]})
    assert counted.json() == {"input_tokens": WORDS}
    [record] = wait_for_records(1)
    assert (record.route, record.input_tokens, record.output_tokens) == ("embeddings", 3, 0)


# -- the Vercel AI SDK, in Node -------------------------------------------------------------------

def _vercel_unavailable() -> typing.Optional[str]:
    if shutil.which("node") is None:
        return "node is not installed: the Vercel AI SDK client test needs Node.js 18 or later"
    if not (CLIENTS / "node_modules" / "ai").is_dir():
        return "the Vercel AI SDK is not installed: run `make test`, or `npm ci --prefix tests/clients`"
    return None


def run_vercel_ai(gateway: str, key: str, *args: str) -> list[dict]:
    env = {**os.environ, "TOLLGATE_BASE_URL": gateway, "TOLLGATE_API_KEY": key, "TOLLGATE_MODEL": "echo-1"}
    done = subprocess.run(["node", str(CLIENTS / "vercel_ai.mjs"), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# The script's calls, in order: the route each is billed as, its response id's prefix, and its raw
# finish reason when the reply is whole, and when max tokens cut it.
VERCEL_CALLS = [
    ("anthropic", "messages", "msg_", "end_turn", "max_tokens"),
    ("openai-chat", "chat", "chatcmpl-", "stop", "length"),
    ("openai-responses", "responses", "resp_", None, "max_output_tokens"),
]


@pytest.mark.slow
@pytest.mark.skipif(_vercel_unavailable() is not None, reason=_vercel_unavailable() or "")
@pytest.mark.parametrize("max_tokens, text, finish", [(64, "Echo: one two three", "stop"), (2, "Echo: one", "length")])
def test_vercel_ai_sdk(gateway, key, max_tokens, text, finish):
    results = run_vercel_ai(gateway, key, "--prompt", PROMPT, "--max-tokens", str(max_tokens))
    records = wait_for_records(len(results))
    assert len(records) == len(results) == 2 * len(VERCEL_CALLS) + 1
    for index, (provider, route, id_prefix, whole, cut) in enumerate(VERCEL_CALLS):
        for mode, result, record in zip(("generate", "stream"), results[2 * index:], records[2 * index:]):
            assert (result["provider"], result["mode"], result["errors"]) == (provider, mode, []), result
            assert (result["text"], result["finishReason"]) == (text, finish), result
            assert result["rawFinishReason"] == (whole if finish == "stop" else cut), result
            assert result["responseId"].startswith(id_prefix), result
            if mode == "stream":  # Responses closes its text part on output_item.done
                assert result["textParts"] == {"started": 1, "ended": 1}, result
            assert (record.route, record.streamed, record.status, record.usage_estimated) == (
                route, mode == "stream", "ok", False)
            usage = result["usage"]
            assert (usage["inputTokens"], usage["outputTokens"]) == (record.input_tokens, record.output_tokens) == (
                WORDS, len(text.split())), result
            assert usage["totalTokens"] == record.input_tokens + record.output_tokens
    embedded, record = results[-1], records[-1]
    assert (embedded["errors"], embedded["dimensions"]) == ([], [8, 8])
    assert embedded["usage"]["tokens"] == record.input_tokens == WORDS + 3
