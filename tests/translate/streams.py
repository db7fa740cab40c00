"""Fixture streams in, translated streams checked: what every translation test here shares.

A stream's events are (name, data) pairs, as proxy.translate's Events take and give them. The
checks hold a produced stream to its API's published rules (event order, indexes, sequence
numbers), validate every event against the official SDK's own types, and hand it to the SDK's own
accumulator, whose final object the tests then read: what a real client would end up with.
"""
import json
from pathlib import Path
from typing import Any, Iterable, Optional, get_args

from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai import ContentFilterFinishReasonError, LengthFinishReasonError, omit
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel

from proxy.sse import Splitter, parse
from proxy.translate import DONE, encode

DATA = Path(__file__).resolve().parent.parent / "data" / "translation"


# --- fixtures --------------------------------------------------------------------------------------

def sse(name: str) -> list[tuple[Optional[str], Any]]:
    """A fixture stream's events, parsed the way the proxy parses an upstream's (comments skipped)."""
    return wire((DATA / name).read_bytes())


def wire(raw: bytes) -> list[tuple[Optional[str], Any]]:
    splitter = Splitter()
    pieces = splitter.feed(raw) + [splitter.rest()]
    events = []
    for piece in pieces:
        event = parse(piece)
        if not event.data:
            continue  # a comment block (the fixture's source line), or trailing blank lines
        events.append((event.name, DONE if event.data.strip() == DONE else json.loads(event.data)))
    return events


def document(name: str) -> dict:
    """A fixture body, without the `_source` it cites."""
    loaded = json.loads((DATA / name).read_text())
    loaded.pop("_source")
    return loaded


def run(translation, events: Iterable[tuple[Optional[str], Any]], *, named: bool) -> list:
    """Feed a translation every event, then finish it; what comes out, through the wire and back
    (encoded as the client gets it, and parsed again), so the bytes are checked too."""
    out = []
    for name, data in events:
        out += translation.feed(name, data)
    out += translation.finish()
    return wire(encode(out, named=named))


# --- re-chunking: the same stream cut at other places the APIs allow -------------------------------

def pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [text]


def split_anthropic(events: list, size: int = 1) -> list:
    """Every text, thinking and partial_json delta cut into pieces of `size` characters."""
    fields = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}
    out = []
    for name, data in events:
        delta = data.get("delta") if isinstance(data, dict) and data.get("type") == "content_block_delta" else None
        field = fields.get(delta.get("type")) if isinstance(delta, dict) else None
        if field is None or not delta[field]:
            out.append((name, data))
            continue
        for piece in pieces(delta[field], size):
            out.append((name, {**data, "delta": {**delta, field: piece}}))
    return out


def split_chat(chunks: list, size: int = 1) -> list:
    """Every chunk's content, reasoning and tool-call arguments cut into pieces of `size` characters,
    one chunk each; a tool call's first piece keeps its index, id and name with empty arguments; a
    finish reason (and usage in the same chunk, as DeepSeek sends it) comes in a chunk of its own."""
    out = []
    for name, chunk in chunks:
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not choices:
            out.append((name, chunk))
            continue
        choice = choices[0]
        delta = dict(choice["delta"])
        deltas = []
        for field in ("reasoning_content", "content"):
            if isinstance(delta.get(field), str) and delta[field]:
                deltas += [{field: piece} for piece in pieces(delta.pop(field), size)]
        for call in delta.pop("tool_calls", None) or []:
            function = dict(call.get("function") or {})
            arguments = function.pop("arguments", None) or ""
            if "id" in call or "name" in function:
                deltas.append({"tool_calls": [{**call, "function": {**function, "arguments": ""}}]})
            deltas += [{"tool_calls": [{"index": call["index"], "function": {"arguments": piece}}]}
                       for piece in (pieces(arguments, size) if arguments else [])]
        if not deltas:
            out.append((name, chunk))
            continue
        deltas[0] = {**delta, **deltas[0]}  # the role, and fields sent as null, ride with the first piece
        quiet = {"usage": None} if "usage" in chunk else {}
        out += [(name, {**chunk, "choices": [{**choice, "delta": piece, "finish_reason": None}], **quiet})
                for piece in deltas]
        if choice.get("finish_reason") or chunk.get("usage"):
            out.append((name, {**chunk, "choices": [{**choice, "delta": {}}]}))
    return out


# --- the SDKs' types -------------------------------------------------------------------------------

def _members(union) -> list:
    if isinstance(union, type) and issubclass(union, BaseModel):
        return [union]
    return [member for arg in get_args(union) for member in _members(arg)]


def _by_type(union) -> dict:
    return {get_args(member.model_fields["type"].annotation)[0]: member for member in _members(union)}


ANTHROPIC_EVENTS = _by_type(RawMessageStreamEvent)
RESPONSES_EVENTS = _by_type(ResponseStreamEvent)


# --- Anthropic's Messages stream -------------------------------------------------------------------

def check_anthropic(events: list, *, error: bool = False) -> Message:
    """The stream follows Anthropic's event flow (message_start; blocks one at a time, each
    started, deltas on its index, stopped; message_delta; message_stop), or ends in an error event
    when `error`; every event is valid as the SDK types it; the SDK's accumulated message comes back."""
    names = [name for name, _ in events]
    assert names and names[0] == "message_start", names
    if error:
        assert names[-1] == "error" and names.count("error") == 1, names
        events = events[:-1]
    else:
        assert names[-2:] == ["message_delta", "message_stop"], names
        assert names.count("message_delta") == 1 and names.count("message_stop") == 1, names
    snapshot, buffers, open_index, next_index = None, {}, None, 0
    for name, data in events:
        assert isinstance(data, dict) and data["type"] == name, (name, data)
        if name == "ping":
            continue
        ANTHROPIC_EVENTS[name].model_validate(data)
        if name == "content_block_start":
            assert open_index is None, f"block {data['index']} started while {open_index} is open"
            assert data["index"] == next_index, (data["index"], next_index)
            open_index, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index, f"a delta for block {data['index']}, open: {open_index}"
        elif name == "content_block_stop":
            assert data["index"] == open_index, (data["index"], open_index)
            open_index = None
        elif name in ("message_delta", "message_stop"):
            assert open_index is None, f"{name} while block {open_index} is open"
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    if error:
        return snapshot
    Message.model_validate(snapshot.model_dump())
    return snapshot


# --- OpenAI chat completion chunks -----------------------------------------------------------------

def check_chat(events: list, *, wants_usage: bool, error: bool = False,
               usage_with_finish: bool = False) -> Optional[ChatCompletion]:
    """The chunks follow OpenAI's stream (one id; the role first; each tool call opened with its
    index, id and name, indexes from 0; one finish reason after all content; the usage chunk, with
    empty choices, only when asked and last; then [DONE]), each valid as the SDK's
    ChatCompletionChunk; the SDK's ChatCompletionStreamState builds the final completion.
    `usage_with_finish`: the usage rides on the finish reason's chunk instead (DeepSeek's streams)."""
    assert all(name is None for name, _ in events), "chat chunks are unnamed"
    datas = [data for _, data in events]
    if error:
        assert isinstance(datas[-1], dict) and set(datas[-1]) == {"error"}, datas[-1]
        assert DONE not in datas
        datas = datas[:-1]
    else:
        assert datas[-1] == DONE and datas.count(DONE) == 1, datas[-3:]
        datas = datas[:-1]
    chunks = [ChatCompletionChunk.model_validate(data) for data in datas]
    assert chunks, "no chunks"
    assert len({chunk.id for chunk in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices and chunks[0].choices[0].delta.role == "assistant"
    finished = False
    usage_seen = False
    calls_opened: list[int] = []
    for position, chunk in enumerate(chunks):
        if not chunk.choices:
            assert chunk.usage is not None and wants_usage and not usage_seen
            assert position == len(chunks) - 1, "the usage chunk is the last"
            usage_seen = True
            continue
        (choice,) = chunk.choices
        if chunk.usage is not None:
            assert usage_with_finish and choice.finish_reason is not None and position == len(chunks) - 1
            usage_seen = True
        assert choice.index == 0
        delta = choice.delta
        if finished:
            raise AssertionError(f"a chunk after the finish reason: {chunk}")
        for call in delta.tool_calls or ():
            if call.index not in calls_opened:
                assert call.index == len(calls_opened), "tool call indexes go 0, 1, 2..."
                assert call.id and call.type == "function" and call.function and call.function.name, call
                calls_opened.append(call.index)
            else:
                assert call.index == calls_opened[-1], "arguments for a call that is no longer the last"
                assert call.id is None and (call.function.name is None), call
        if choice.finish_reason is not None:
            finished = True
    assert finished or error, "no finish reason"
    assert usage_seen == (wants_usage and not error), (usage_seen, wants_usage)
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    if error:
        return None
    try:
        return state.get_final_completion()
    except (LengthFinishReasonError, ContentFilterFinishReasonError):  # the SDK's parse refuses these; the rest stands
        return ChatCompletion.model_validate(state.current_completion_snapshot.model_dump())


# --- the Responses API stream ----------------------------------------------------------------------

_ITEM_EVENTS = ("response.output_text.delta", "response.output_text.done", "response.content_part.added",
                "response.content_part.done", "response.function_call_arguments.delta",
                "response.function_call_arguments.done", "response.reasoning_text.delta",
                "response.reasoning_text.done", "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done")


def check_responses(events: list, *, end: str = "response.completed") -> Response:
    """The events follow the Responses stream (sequence_number 0, 1, 2...; response.created and
    in_progress first; each output item added, its events, then done, one at a time, at output
    indexes 0, 1, 2...; `end` last, with usage); each valid as the SDK types it; the SDK's
    ResponseStreamState builds the final response."""
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"], names[:3]
    assert names[-1] == end and names.count(end) == 1, names[-3:]
    numbers = [data["sequence_number"] for _, data in events]
    assert numbers == list(range(len(events))), numbers
    ids = {data["response"]["id"] for _, data in events if "response" in data}
    assert len(ids) == 1, ids
    open_item: Optional[dict] = None
    done_items: list[str] = []
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    for name, data in events:
        assert data["type"] == name
        event = RESPONSES_EVENTS[name].model_validate(data)
        if name == "response.output_item.added":
            assert open_item is None, f"item {data['item']['id']} added while {open_item} is open"
            assert data["output_index"] == len(done_items)
            open_item = data["item"]
        elif name in _ITEM_EVENTS:
            assert open_item is not None and data["item_id"] == open_item["id"], (name, data, open_item)
            assert data["output_index"] == len(done_items)
        elif name == "response.output_item.done":
            assert open_item is not None and data["item"]["id"] == open_item["id"]
            assert data["output_index"] == len(done_items)
            done_items.append(open_item["id"])
            open_item = None
        elif name == end:
            response = data["response"]
            assert [item["id"] for item in response["output"]] == done_items
            if end != "response.failed":  # a failure may leave an item unfinished
                assert open_item is None and response["usage"] is not None
        for seen in state.handle_event(event):
            if seen.type == "response.completed":
                final = seen.response
    return final if final is not None else Response.model_validate(events[-1][1]["response"])


# --- what a stream says, reassembled from its pieces -------------------------------------------------

def chat_said(chunks: list) -> dict:
    """A chat stream's text, reasoning and tool calls (id, name, arguments), put back together."""
    said: dict = {"text": "", "reasoning": "", "calls": {}, "finish": None}
    for _, chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            said["text"] += delta.get("content") or ""
            said["reasoning"] += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for call in delta.get("tool_calls") or ():
                entry = said["calls"].setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
                function = call.get("function") or {}
                entry["id"] = entry["id"] or call.get("id")
                entry["name"] = entry["name"] or function.get("name")
                entry["arguments"] += function.get("arguments") or ""
            said["finish"] = choice.get("finish_reason") or said["finish"]
    said["calls"] = [said["calls"][index] for index in sorted(said["calls"])]
    return said


def anthropic_said(events: list) -> list[tuple]:
    """An Anthropic stream's blocks, put back together: ("text", text), ("thinking", text) and
    ("tool_use", id, name, the input's JSON text)."""
    blocks: dict = {}
    for _, data in events:
        if not isinstance(data, dict):
            continue
        if data.get("type") == "content_block_start":
            block = data["content_block"]
            blocks[data["index"]] = ({"text": ["text", block.get("text", "")],
                                      "thinking": ["thinking", block.get("thinking", "")]}.get(block["type"])
                                     or ["tool_use", block["id"], block["name"], ""])
        elif data.get("type") == "content_block_delta":
            delta, block = data["delta"], blocks[data["index"]]
            if delta["type"] == "text_delta":
                block[1] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block[1] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                block[3] += delta["partial_json"]
    return [tuple(blocks[index]) for index in sorted(blocks)]
