"""The built-in offline model: replies "Echo: <your last message>", one token per word.

It is the first thing a newcomer points a client at, so it speaks every route's wire format as
the provider does, field for field and event for event (tests/proxy/test_demo_model.py checks it
against the official SDKs' types and the Vercel AI SDK's schemas), and reports usage like a real
upstream, so demos and tests exercise the same metering and relay code as a real provider.

Input tokens are the words in all the request's text; output tokens the words it replies with.
Like a real model it stops at the call's max output tokens (per choice), at the first stop
sequence it produces (OpenAI chat's `stop`, Anthropic's `stop_sequences`), and answers OpenAI
chat's `n` with n identical choices, whose output tokens all count.
"""
import base64
import hashlib
import itertools
import json
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from ..protocols import CHAT, COUNT_TOKENS, EMBEDDINGS, MESSAGES, RESPONSES

_TEXT_KEYS = ("text", "content", "input", "system", "instructions")
MAX_CHOICES = 128          # OpenAI's limit on chat's `n`
EMBEDDING_DIMENSIONS = 8   # unless the request asks for `dimensions`
MAX_EMBEDDING_DIMENSIONS = 4096
# Why the model stopped (Completion.finish), as each API says it.
CHAT_FINISH = {"end": "stop", "stop_sequence": "stop", "max_tokens": "length"}
MESSAGES_STOP = {"end": "end_turn", "stop_sequence": "stop_sequence", "max_tokens": "max_tokens"}


def _texts(node: Any, key: str = "") -> Iterator[str]:
    if isinstance(node, str):
        if key in _TEXT_KEYS:
            yield node
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item, key)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k in _TEXT_KEYS or isinstance(v, (list, dict)):
                yield from _texts(v, k)


def _words(texts) -> list[str]:
    return [w for t in texts for w in t.split()]


def _last_user_text(body: dict) -> str:
    if isinstance(body.get("input"), str):
        return body["input"]
    for message in reversed(body.get("messages") or body.get("input") or []):
        if isinstance(message, dict) and message.get("role", "user") == "user":
            return " ".join(_texts(message.get("content"), "content"))
    return ""


def _stop_sequences(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [s for s in values if isinstance(s, str) and s]


@dataclass(frozen=True)
class Completion:
    """What the model generated: its tokens as streamed ("Echo:", " one", " two") and why it stopped."""

    tokens: list[str]
    finish: str                          # "end", "max_tokens" or "stop_sequence"
    stop_sequence: Optional[str] = None  # the one it stopped at

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def generate(prompt: str, max_output: int, stop: list[str]) -> Completion:
    """Echo the prompt, at most `max_output` tokens, cut before the first stop sequence produced."""
    words = ["Echo:", *prompt.split()]
    tokens = [w if i == 0 else " " + w for i, w in enumerate(words)][:max_output]
    text = "".join(tokens)
    # The model stops at the first stop sequence it completes; the sequence itself is not returned.
    hits = [(text.find(s) + len(s), text.find(s), s) for s in stop if s in text]
    if hits:
        _, end, sequence = min(hits)
        kept, at = [], 0
        for token in tokens:
            if at >= end:
                break
            kept.append(token[:end - at])
            at += len(token)
        return Completion(kept, "stop_sequence", sequence)
    return Completion(tokens, "max_tokens" if len(words) > max_output else "end")


def _sse(data: Any, event: Optional[str] = None) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


def _named(data: dict) -> bytes:
    """Anthropic and Responses events: the SSE event name is the data's type."""
    return _sse(data, data["type"])


class EchoResponse:
    def __init__(self, content_type: str, parts: Iterator[bytes], status: int = 200):
        self.status = status
        self.content_type = content_type
        self._parts = parts

    def chunks(self) -> Iterator[bytes]:
        yield from self._parts

    def read(self, limit: int) -> bytes:
        return b"".join(self._parts)

    def close(self) -> None:
        pass


def _json(data: dict, status: int = 200) -> EchoResponse:
    return EchoResponse("application/json", iter([json.dumps(data).encode()]), status)


def _openai_error(message: str, param: str) -> EchoResponse:
    return _json({"error": {"message": message, "type": "invalid_request_error", "param": param,
                            "code": "invalid_value"}}, 400)


class EchoUpstream:
    def send(self, *, route: str, body: dict, stream: bool, max_output: int) -> EchoResponse:
        input_tokens = max(1, len(_words(_texts(body))))
        if route == COUNT_TOKENS:
            return _json({"input_tokens": input_tokens})
        if route == EMBEDDINGS:
            return _json(_embeddings(body))
        model = body.get("model", "echo")
        prompt = _last_user_text(body)
        if route == CHAT:
            n = 1 if body.get("n") is None else body["n"]
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CHOICES:
                return _openai_error(f"Invalid 'n': integer between 1 and {MAX_CHOICES} expected.", "n")
            completion = generate(prompt, max_output, _stop_sequences(body.get("stop")))
            chat = _Chat(model, completion, input_tokens, n)
            if not stream:
                return _json(chat.body())
            return EchoResponse("text/event-stream", chat.events(_wants_usage(body)))
        if route == RESPONSES:
            reply = _Response(model, generate(prompt, max_output, []), input_tokens, body)
            return EchoResponse("text/event-stream", reply.events()) if stream else _json(reply.body())
        if route == MESSAGES:
            completion = generate(prompt, max_output, _stop_sequences(body.get("stop_sequences")))
            message = _Message(model, completion, input_tokens)
            return EchoResponse("text/event-stream", message.events()) if stream else _json(message.body())
        raise ValueError(f"the echo model does not serve route {route!r}")


def _wants_usage(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """Each input as (text to hash, tokens): a string, strings, a token array, or token arrays."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and all(isinstance(t, int) for t in value):
        value = [value]  # one input given as token ids
    elif not isinstance(value, list):
        value = []
    return [(item, max(1, len(item.split()))) if isinstance(item, str) else (json.dumps(item), max(1, len(item)))
            for item in value if isinstance(item, (str, list))]


def _embeddings(body: dict) -> dict:
    dims = body.get("dimensions")
    dims = dims if isinstance(dims, int) and not isinstance(dims, bool) else EMBEDDING_DIMENSIONS
    dims = max(1, min(dims, MAX_EMBEDDING_DIMENSIONS))
    data, tokens = [], 0
    for index, (text, count) in enumerate(_embedding_inputs(body.get("input"))):
        tokens += count
        digest = hashlib.sha256(text.encode()).digest()
        vector = [(digest[i % 32] - 128) / 128 for i in range(dims)]
        if body.get("encoding_format") == "base64":  # little-endian float32, as OpenAI sends them
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        else:
            embedding = vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {"object": "list", "data": data, "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


class _Chat:
    """OpenAI chat completions: a chat.completion body, or chat.completion.chunk events and [DONE]."""

    def __init__(self, model: str, completion: Completion, input_tokens: int, n: int):
        self.completion, self.input_tokens, self.n = completion, input_tokens, n
        self.base = {"id": f"chatcmpl-echo{secrets.token_hex(12)}", "object": "chat.completion",
                     "created": int(time.time()), "model": model, "service_tier": "default",
                     "system_fingerprint": "fp_echo"}

    def usage(self) -> dict:
        output = len(self.completion.tokens) * self.n
        return {"prompt_tokens": self.input_tokens, "completion_tokens": output,
                "total_tokens": self.input_tokens + output,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

    def body(self) -> dict:
        message = {"role": "assistant", "content": self.completion.text, "refusal": None, "annotations": []}
        choices = [{"index": i, "message": message, "logprobs": None,
                    "finish_reason": CHAT_FINISH[self.completion.finish]} for i in range(self.n)]
        return {**self.base, "choices": choices, "usage": self.usage()}

    def events(self, include_usage: bool) -> Iterator[bytes]:
        # With include_usage OpenAI puts "usage": null on every chunk, and the usage on a last one without choices.
        base = {**self.base, "object": "chat.completion.chunk", **({"usage": None} if include_usage else {})}

        def chunk(index: int, delta: dict, finish: Optional[str] = None) -> bytes:
            return _sse({**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                              "finish_reason": finish}]})

        for i in range(self.n):
            yield chunk(i, {"role": "assistant", "content": "", "refusal": None})
        for token in self.completion.tokens:
            for i in range(self.n):
                yield chunk(i, {"content": token})
        for i in range(self.n):
            yield chunk(i, {}, CHAT_FINISH[self.completion.finish])
        if include_usage:
            yield _sse({**base, "choices": [], "usage": self.usage()})
        yield b"data: [DONE]\n\n"


class _Response:
    """OpenAI Responses: a response object, or its event stream with increasing sequence numbers."""

    def __init__(self, model: str, completion: Completion, input_tokens: int, request: dict):
        self.model, self.completion, self.input_tokens, self.request = model, completion, input_tokens, request
        self.id = f"resp_{secrets.token_hex(24)}"
        self.message_id = f"msg_{secrets.token_hex(24)}"
        self.created_at = int(time.time())
        self.truncated = completion.finish == "max_tokens"
        self.status = "incomplete" if self.truncated else "completed"

    def part(self, text: str) -> dict:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def item(self, status: str) -> dict:
        content = [self.part(self.completion.text)] if status != "in_progress" else []
        return {"id": self.message_id, "type": "message", "status": status, "content": content, "role": "assistant"}

    def body(self, status: Optional[str] = None) -> dict:
        """The response object; `in_progress` as the stream's first events show it."""
        status = status or self.status
        done = status != "in_progress"
        request = self.request
        output = len(self.completion.tokens)
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "background": False, "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if done and self.truncated else None,
            "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
            "max_tool_calls": request.get("max_tool_calls"), "model": self.model,
            "output": [self.item(self.status)] if done else [],
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": request.get("previous_response_id"),
            "prompt_cache_key": request.get("prompt_cache_key"),
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": request.get("safety_identifier"), "service_tier": "default",
            "temperature": request.get("temperature", 1.0),
            "text": request.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools") or [],
            "top_logprobs": request.get("top_logprobs", 0), "top_p": request.get("top_p", 1.0),
            "truncation": request.get("truncation", "disabled"),
            "usage": {"input_tokens": self.input_tokens,
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": self.input_tokens + output} if done else None,
            "user": request.get("user"), "metadata": request.get("metadata") or {},
        }

    def events(self) -> Iterator[bytes]:
        sequence = itertools.count()

        def event(kind: str, **fields) -> bytes:
            return _named({"type": f"response.{kind}", "sequence_number": next(sequence), **fields})

        where = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        yield event("created", response=self.body("in_progress"))
        yield event("in_progress", response=self.body("in_progress"))
        yield event("output_item.added", output_index=0, item=self.item("in_progress"))
        yield event("content_part.added", **where, part=self.part(""))
        for token in self.completion.tokens:
            yield event("output_text.delta", **where, delta=token, logprobs=[])
        yield event("output_text.done", **where, text=self.completion.text, logprobs=[])
        yield event("content_part.done", **where, part=self.part(self.completion.text))
        yield event("output_item.done", output_index=0, item=self.item(self.status))
        yield event(self.status, response=self.body())


class _Message:
    """Anthropic messages: a message body, or message_start ... message_stop."""

    def __init__(self, model: str, completion: Completion, input_tokens: int):
        self.model, self.completion, self.input_tokens = model, completion, input_tokens
        self.id = f"msg_echo{secrets.token_hex(12)}"

    def usage(self, output_tokens: int) -> dict:
        return {"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": output_tokens, "service_tier": "standard"}

    def body(self, started: bool = False) -> dict:
        """The message; as message_start shows it when `started`: no content and no stop reason yet."""
        done = not started
        return {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [{"type": "text", "text": self.completion.text}] if done else [],
            "stop_reason": MESSAGES_STOP[self.completion.finish] if done else None,
            "stop_sequence": self.completion.stop_sequence if done else None,
            "usage": self.usage(len(self.completion.tokens) if done else 1),
        }

    def events(self) -> Iterator[bytes]:
        yield _named({"type": "message_start", "message": self.body(started=True)})
        yield _named({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        yield _named({"type": "ping"})
        for token in self.completion.tokens:
            yield _named({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}})
        yield _named({"type": "content_block_stop", "index": 0})
        # message_delta's usage is cumulative: the input classes again, and all the output.
        usage = {k: v for k, v in self.usage(len(self.completion.tokens)).items()
                 if k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")}
        yield _named({"type": "message_delta", "delta": {"stop_reason": MESSAGES_STOP[self.completion.finish],
                                                         "stop_sequence": self.completion.stop_sequence},
                      "usage": usage})
        yield _named({"type": "message_stop"})
