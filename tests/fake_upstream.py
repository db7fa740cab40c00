"""A real HTTP upstream on loopback that speaks OpenAI's and Anthropic's wire formats.

Tests script its next answers (`fake.next(...)`) and read what it received (`fake.received`):
usage to report, delays between events, failures before and after the first byte, missing
usage, chunked or close-delimited streams, and error bodies that echo the caller's key.
Usage comes in the shape of the provider named by `dialect` (see proxy/dialects.py), complete
and streamed, as each provider documents it.

What the model "says" can be scripted in each protocol's own words: text, tool calls (`tool_calls`,
their JSON arguments streamed in `fragment`-character pieces: OpenAI's tool_calls deltas with the
index, id and name first and then argument fragments; Anthropic's tool_use block with
input_json_delta fragments), reasoning (`thinking`: DeepSeek's `reasoning_content` on the chat
route, a thinking block with thinking_delta and signature_delta on Anthropic's) and the finish
reason (`finish`, in the upstream's vocabulary). Tool calls and reasoning are on the chat and
Messages routes only.
"""
import json
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

# shutdown() waits up to one poll interval (0.5 s by default), at the end of every test.
POLL = 0.01

# Random-looking, like real credentials: no run of them is an English word a message could contain.
OPENAI_KEY = "sk-proj-Vq7ZtK3xWm9LpR2bNc8HjY4s"
ANTHROPIC_KEY = "sk-ant-api03-Gx5QwT8zKd2MvB7nLr4YpJ6c"


@dataclass
class ToolCall:
    """A tool call the model makes: its arguments an object (sent as JSON) or JSON text as is."""

    name: str
    arguments: object = field(default_factory=dict)
    id: Optional[str] = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class Behaviour:
    input: int = 11
    output: int = 7
    cache_read: int = 0
    cache_write: int = 0
    text: str = "Hello from the fake upstream"
    omit_usage: bool = False
    delay: float = 0.0                 # seconds between stream events
    status: int = 200
    echo_key_in_error: bool = False
    error_message: Optional[str] = None  # the error body's message, verbatim ("{key}" is the caller's key)
    drop_before_headers: bool = False  # close the connection without answering
    hang_before_headers: float = 0.0   # seconds of silence before the headers
    drop_after_events: Optional[int] = None   # stream: close the connection after N events
    hang_after_events: Optional[int] = None   # stream: go silent after N events
    error_event_after: Optional[int] = None   # stream: after N events, an error event echoing the key, then end
    close_delimited: bool = False      # stream without chunked encoding, ended by closing
    gate: Optional[threading.Event] = None    # stream: wait for this before the second event
    # Responses stream: the last event, "response.completed", or "response.incomplete" (what reaching
    # max_output_tokens produces) or "response.failed"; each carries the usage so far.
    final_event: str = "response.completed"
    # Messages stream: message_delta's cumulative usage also reports the input classes, as these
    # (input, cache_read, cache_write) instead of message_start's figures.
    delta_input: Optional[tuple] = None
    before_headers: Optional[threading.Event] = None  # wait for this before answering at all
    force_stream: Optional[bool] = None  # a lax upstream: stream (True) or not (False) whatever was asked
    raw_body: Optional[bytes] = None     # answer 200 with exactly these bytes (an unparseable success)
    # Whose usage shape to answer with. The token knobs are disjoint classes (`cache_write` is the
    # 5-minute writes); the fake adds them up into each provider's wire figures.
    dialect: str = "openai"
    cache_write_1h: int = 0
    input_audio: int = 0
    output_audio: int = 0
    reasoning: int = 0                 # inside completion_tokens / output_tokens, as OpenAI reports it ...
    reasoning_outside: bool = False    # ... or beside it (xAI always reports it beside it)
    hidden: int = 0                    # tokens only in total_tokens (Gemini's thoughts through adapters)
    # Tool uses: web_search, web_fetch, file_search, code_container (Responses output items, Anthropic's
    # server_tool_use), search_sources (xAI's num_sources_used).
    units: dict = field(default_factory=dict)
    service_tier: Optional[str] = None  # the tier the response says served it
    # What the model says besides `text` (chat and Messages routes). With tool calls and an empty
    # `text`, no text at all: content null (chat), no text block (Messages).
    tool_calls: list = field(default_factory=list)  # ToolCall, in order
    fragment: int = 4                  # stream: characters of tool arguments per delta
    thinking: Optional[str] = None     # reasoning text: reasoning_content (chat), a thinking block (Messages)
    signature: str = "EqQBCkYIBxgCKkBfake+signature=="  # the thinking block's (Messages)
    # The finish reason as the upstream words it: chat's stop / length / tool_calls / content_filter,
    # Messages' end_turn / max_tokens / tool_use / stop_sequence / refusal. None: tool_calls (tool_use)
    # when there are tool calls, else stop (end_turn).
    finish: Optional[str] = None
    stop_sequence: Optional[str] = None  # Messages: the stop sequence met, with finish="stop_sequence"


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that hung up mid-answer (the gateway cutting a stream short) is expected here:
        say nothing; anything else is printed as usual."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@dataclass
class FakeUpstream:
    received: list = field(default_factory=list)
    script: "queue.Queue[Behaviour]" = field(default_factory=queue.Queue)
    default: Behaviour = field(default_factory=Behaviour)
    # When set, only these credentials are accepted (as a provider does); any other gets 401.
    valid_keys: Optional[set] = None

    def next(self, **knobs) -> Behaviour:
        behaviour = Behaviour(**knobs)
        self.script.put(behaviour)
        return behaviour

    def take(self) -> Behaviour:
        try:
            return self.script.get_nowait()
        except queue.Empty:
            return self.default

    def start(self) -> "FakeUpstream":
        fake = self

        class Handler(_Handler):
            upstream = fake

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _usage(route: str, b: Behaviour) -> dict:
    if route == "chat":
        return _chat_usage(b)
    if route == "responses":
        outside = b.reasoning if b.reasoning_outside else 0
        usage = {"input_tokens": b.input + b.cache_read, "input_tokens_details": {"cached_tokens": b.cache_read},
                 "output_tokens": b.output + b.reasoning - outside,
                 "output_tokens_details": {"reasoning_tokens": b.reasoning}}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"] + outside + b.hidden
        return usage
    if route == "embeddings":
        return {"prompt_tokens": b.input, "total_tokens": b.input}
    return _messages_usage(b)


def _chat_usage(b: Behaviour) -> dict:
    dialect, writes = b.dialect, b.cache_write + b.cache_write_1h
    # Only OpenRouter and DashScope report cache writes on this route; OpenAI has none to report.
    prompt = b.input + b.cache_read + b.input_audio + (writes if dialect in ("openrouter", "dashscope") else 0)
    outside = b.reasoning if b.reasoning_outside or dialect == "xai" else 0
    completion = b.output + b.output_audio + b.reasoning - outside
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion + outside + b.hidden}
    if dialect == "deepseek":
        usage.update(prompt_cache_hit_tokens=b.cache_read, prompt_cache_miss_tokens=prompt - b.cache_read)
    elif dialect == "moonshot":
        if b.cache_read:
            usage["cached_tokens"] = b.cache_read
    elif dialect == "xai":
        usage["prompt_tokens_details"] = {"text_tokens": prompt - b.input_audio, "audio_tokens": b.input_audio,
                                          "image_tokens": 0, "cached_tokens": b.cache_read}
    else:
        details = usage["prompt_tokens_details"] = {"cached_tokens": b.cache_read}
        if b.input_audio:
            details["audio_tokens"] = b.input_audio
        if dialect == "openrouter" and writes:
            details["cache_write_tokens"] = writes
        if dialect == "dashscope" and writes:
            details.update(cache_creation_input_tokens=writes, cache_type="ephemeral",
                           cache_creation={"ephemeral_5m_input_tokens": b.cache_write})
            if b.cache_write_1h:
                details["cache_creation"]["ephemeral_1h_input_tokens"] = b.cache_write_1h
    if b.reasoning or b.output_audio or dialect == "xai":
        usage["completion_tokens_details"] = {"reasoning_tokens": b.reasoning, "audio_tokens": b.output_audio,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    if dialect == "xai":
        usage["num_sources_used"] = b.units.get("search_sources", 0)
    return usage


_SERVER_TOOL_USE = {"web_search": "web_search_requests", "web_fetch": "web_fetch_requests",
                    "code_container": "code_execution_requests"}


def _input_classes(b: Behaviour) -> dict:
    """Anthropic's input figures, with the 5-minute / 1-hour breakdown when it has one to give."""
    usage = {"input_tokens": b.input, "cache_read_input_tokens": b.cache_read,
             "cache_creation_input_tokens": b.cache_write + b.cache_write_1h}
    if b.dialect == "anthropic" or b.cache_write_1h:
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": b.cache_write,
                                   "ephemeral_1h_input_tokens": b.cache_write_1h}
    return usage


def _server_tool_use(b: Behaviour) -> dict:
    tools = {field_: b.units[unit] for unit, field_ in _SERVER_TOOL_USE.items() if unit in b.units}
    return {"server_tool_use": tools} if tools else {}


def _tier(b: Behaviour) -> dict:
    tier = b.service_tier or ("standard" if b.dialect == "anthropic" else None)
    return {"service_tier": tier} if tier else {}


def _messages_usage(b: Behaviour) -> dict:
    classes = _input_classes(b)  # thinking is inside output_tokens
    usage = {"input_tokens": b.input, "output_tokens": b.output + b.reasoning,
             "cache_read_input_tokens": b.cache_read,
             "cache_creation_input_tokens": classes["cache_creation_input_tokens"]}
    if "cache_creation" in classes:
        usage["cache_creation"] = classes["cache_creation"]
    return {**usage, **_server_tool_use(b), **_tier(b)}


def _tool_items(b: Behaviour) -> list:
    """The Responses output items a call's tool uses leave, before its message."""
    items = [{"type": "web_search_call", "id": f"ws_{i}", "status": "completed",
              "action": {"type": "search", "query": "fake query"}} for i in range(b.units.get("web_search", 0))]
    items += [{"type": "file_search_call", "id": f"fs_{i}", "status": "completed", "queries": ["fake query"],
               "results": None} for i in range(b.units.get("file_search", 0))]
    items += [{"type": "web_fetch_call", "id": f"wf_{i}", "status": "completed"}
              for i in range(b.units.get("web_fetch", 0))]
    # Two calls in each container: a container is billed once, whatever runs in it.
    items += [{"type": "code_interpreter_call", "id": f"ci_{i}_{j}", "status": "completed", "code": "print(1)",
               "container_id": f"cntr_{i}", "outputs": None}
              for i in range(b.units.get("code_container", 0)) for j in range(2)]
    return items


def _call_id(b: Behaviour, i: int, prefix: str) -> str:
    return b.tool_calls[i].id or f"{prefix}fake{i}"


def _finish(route: str, b: Behaviour) -> str:
    if b.finish is not None:
        return b.finish
    if route == "chat":
        return "tool_calls" if b.tool_calls else "stop"
    return "tool_use" if b.tool_calls else "end_turn"


def _pieces(text: str, size: int) -> list:
    return [text[i:i + size] for i in range(0, len(text), max(size, 1))]


def _words(text: str) -> list:
    words = text.split()
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _blocks(b: Behaviour) -> list:
    """A complete Anthropic message's content."""
    content = []
    if b.thinking is not None:
        content.append({"type": "thinking", "thinking": b.thinking, "signature": b.signature})
    if b.text or not b.tool_calls:
        content.append({"type": "text", "text": b.text})
    content += [{"type": "tool_use", "id": _call_id(b, i, "toolu_"), "name": call.name,
                 "input": json.loads(call.arguments_json())} for i, call in enumerate(b.tool_calls)]
    return content


def _sse(data, event=None) -> bytes:
    return (f"event: {event}\n" if event else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"


def _complete(route: str, doc: dict, b: Behaviour) -> dict:
    model = doc.get("model")
    if route == "chat":
        message = {"role": "assistant", "content": b.text if b.text or not b.tool_calls else None}
        if b.thinking is not None:
            message["reasoning_content"] = b.thinking
        if b.tool_calls:
            message["tool_calls"] = [{"id": _call_id(b, i, "call_"), "type": "function",
                                      "function": {"name": call.name, "arguments": call.arguments_json()}}
                                     for i, call in enumerate(b.tool_calls)]
        body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": _finish(route, b)}]}
        body.update(_tier(b))
    elif route == "responses":
        body = {"id": "resp_fake", "object": "response", "created_at": 1, "status": "completed", "model": model,
                "output": [*_tool_items(b),
                           {"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": b.text, "annotations": []}]}]}
        body.update(_tier(b))
    elif route == "embeddings":
        inputs = doc["input"] if isinstance(doc["input"], list) else [doc["input"]]
        body = {"object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": [0.5, -0.25, 0.125]}
                         for i in range(len(inputs))]}
    elif route == "count_tokens":
        return {"input_tokens": b.input}
    else:
        body = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": _blocks(b),
                "stop_reason": _finish(route, b), "stop_sequence": b.stop_sequence}
    if not b.omit_usage:
        body["usage"] = _usage(route, b)
    return body


def _events(route: str, doc: dict, b: Behaviour) -> list:
    deltas = _words(b.text)
    model = doc.get("model")
    if route == "chat":
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model, **_tier(b)}
        events = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None}]})]

        def chunk(delta: dict) -> bytes:
            return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

        # DeepSeek streams its reasoning first, with content null, then the answer.
        events += [chunk({"content": None, "reasoning_content": d}) for d in _words(b.thinking or "")]
        events += [chunk({"content": d}) for d in deltas]
        for i, call in enumerate(b.tool_calls):
            events.append(chunk({"tool_calls": [{"index": i, "id": _call_id(b, i, "call_"), "type": "function",
                                                 "function": {"name": call.name, "arguments": ""}}]}))
            events += [chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                       for piece in _pieces(call.arguments_json(), b.fragment)]
        last = {"index": 0, "delta": {}, "finish_reason": _finish(route, b)}
        if b.dialect == "moonshot" and not b.omit_usage:  # Moonshot: always, inside the last chunk's choice
            last["usage"] = _usage(route, b)
        events.append(_sse({**base, "choices": [last]}))
        if b.dialect != "moonshot" and not b.omit_usage and (doc.get("stream_options") or {}).get("include_usage"):
            events.append(_sse({**base, "choices": [], "usage": _usage(route, b)}))
        return events + [b"data: [DONE]\n\n"]
    if route == "responses":
        response = {"id": "resp_fake", "object": "response", "created_at": 1, "status": "in_progress",
                    "model": model, "output": []}
        events = [_sse({"type": "response.created", "sequence_number": 0, "response": response},
                       "response.created")]
        tools = _tool_items(b)
        events += [_sse({"type": "response.output_item.done", "sequence_number": i + 1, "output_index": i,
                         "item": item}, "response.output_item.done") for i, item in enumerate(tools)]
        events += [_sse({"type": "response.output_text.delta", "sequence_number": len(tools) + i + 1,
                         "item_id": "msg_fake", "output_index": len(tools), "content_index": 0, "delta": d},
                        "response.output_text.delta")
                   for i, d in enumerate(deltas)]
        status = b.final_event.removeprefix("response.")
        done = {**response, "status": status,
                "output": [*tools, {"type": "message", "id": "msg_fake", "status": status, "role": "assistant",
                                    "content": [{"type": "output_text", "text": b.text, "annotations": []}]}],
                **_tier(b)}
        if status == "incomplete":
            done["incomplete_details"] = {"reason": "max_output_tokens"}
        elif status == "failed":
            done["error"] = {"code": "server_error", "message": "The model failed to finish."}
        if not b.omit_usage:
            done["usage"] = _usage(route, b)
        events.append(_sse({"type": b.final_event, "sequence_number": len(tools) + len(deltas) + 1,
                            "response": done}, b.final_event))
        return events
    classes = _input_classes(b)
    start_usage = {"input_tokens": b.input, "output_tokens": 1, "cache_read_input_tokens": b.cache_read,
                   "cache_creation_input_tokens": classes["cache_creation_input_tokens"]}
    if "cache_creation" in classes:
        start_usage["cache_creation"] = classes["cache_creation"]
    start_usage.update(_tier(b))
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
               "stop_reason": None, "stop_sequence": None}
    if not b.omit_usage:
        message["usage"] = start_usage
    events = [_sse({"type": "message_start", "message": message}, "message_start")]
    index = 0

    def block(start: dict, deltas_: list) -> list:
        return [_sse({"type": "content_block_start", "index": index, "content_block": start}, "content_block_start"),
                *(_sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta")
                  for d in deltas_),
                _sse({"type": "content_block_stop", "index": index}, "content_block_stop")]

    if b.thinking is not None:
        events += block({"type": "thinking", "thinking": "", "signature": ""},
                        [{"type": "thinking_delta", "thinking": d} for d in _words(b.thinking)]
                        + [{"type": "signature_delta", "signature": b.signature}])
        index += 1
    if b.text or not b.tool_calls:
        events += block({"type": "text", "text": ""}, [{"type": "text_delta", "text": d} for d in deltas])
        index += 1
    for i, call in enumerate(b.tool_calls):
        # Anthropic opens a tool's input with an empty fragment, then sends the JSON in pieces.
        pieces = ["", *_pieces(call.arguments_json(), b.fragment)]
        events += block({"type": "tool_use", "id": _call_id(b, i, "toolu_"), "name": call.name, "input": {}},
                        [{"type": "input_json_delta", "partial_json": p} for p in pieces])
        index += 1
    delta = {"type": "message_delta", "delta": {"stop_reason": _finish(route, b), "stop_sequence": b.stop_sequence}}
    if not b.omit_usage:
        delta["usage"] = {"output_tokens": b.output + b.reasoning}
        if b.dialect == "anthropic":  # its message_delta usage is cumulative and repeats the input figures
            delta["usage"] = {**classes, **delta["usage"]}
        delta["usage"].update(_server_tool_use(b))
        if b.delta_input is not None:
            delta["usage"].update(zip(("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"),
                                      b.delta_input))
    events.append(_sse(delta, "message_delta"))
    return events + [_sse({"type": "message_stop"}, "message_stop")]


ROUTES = {"/v1/chat/completions": "chat", "/v1/responses": "responses", "/v1/embeddings": "embeddings",
          "/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait on each other's delayed ACK (~40 ms)
    upstream: FakeUpstream

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.upstream.received.append(Received(self.path, headers, body))
        valid = self.upstream.valid_keys
        if valid is not None and (headers.get("x-api-key") or headers.get("authorization", "").removeprefix(
                "Bearer ")) not in valid:
            self._send_json(401, {"error": {"type": "authentication_error", "message": "invalid x-api-key"}})
            return
        b = self.upstream.take()
        if b.drop_before_headers:
            self.close_connection = True
            return
        if b.hang_before_headers:
            time.sleep(b.hang_before_headers)
        if b.before_headers is not None:
            b.before_headers.wait(60)
        route = ROUTES.get(self.path.split("?")[0])
        if b.status != 200 or route is None:
            key = headers.get("x-api-key") or headers.get("authorization", "")
            message = f"upstream says no (key {key})" if b.echo_key_in_error else "upstream says no"
            if b.error_message is not None:
                message = b.error_message.replace("{key}", key.removeprefix("Bearer "))
            self._send_json(b.status if route else 404, {"error": {"type": "invalid_request_error",
                                                                   "message": message}})
            return
        doc = json.loads(body)
        if b.raw_body is not None:
            self._send_raw(200, "application/json", b.raw_body)
            return
        streamed = bool(doc.get("stream")) if b.force_stream is None else b.force_stream
        if not streamed:
            self._send_json(200, _complete(route, doc, b))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if b.close_delimited:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, event in enumerate(_events(route, doc, b)):
            if b.drop_after_events is not None and i == b.drop_after_events:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if b.hang_after_events is not None and i == b.hang_after_events:
                time.sleep(30)
                return
            if b.error_event_after is not None and i == b.error_event_after:
                key = (self.headers.get("x-api-key") or self.headers.get("authorization", "")).removeprefix("Bearer ")
                event = b"event: error\ndata: %s\n\n" % json.dumps(
                    {"type": "error", "error": {"type": "overloaded_error", "message": f"bad key {key}"}}).encode()
            if i == 1 and b.gate is not None:
                b.gate.wait(60)
            elif i and b.delay:
                time.sleep(b.delay)
            self.wfile.write(event if b.close_delimited else b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            if b.error_event_after is not None and i == b.error_event_after:
                break  # the provider gave up mid-stream
        if not b.close_delimited:
            self.wfile.write(b"0\r\n\r\n")

    def _send_json(self, status: int, data: dict):
        self._send_raw(status, "application/json", json.dumps(data).encode())

    def _send_raw(self, status: int, content_type: str, payload: bytes):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
