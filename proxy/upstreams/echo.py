"""The built-in offline model: replies "Echo: <your last message>", one token per word.

It speaks every route's wire format (streamed and not) and reports usage like a real upstream,
so demos and tests exercise the same metering and relay code as a real provider.
Input tokens are the words in all the request's text; output tokens the words it replies with,
up to the call's max output tokens.
"""
import base64
import hashlib
import json
import struct
import time
from typing import Any, Iterator

from ..metering import CHAT, COUNT_TOKENS, EMBEDDINGS, RESPONSES

_TEXT_KEYS = ("text", "content", "input", "system", "instructions")


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


def _sse(data: Any, event: str = None) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


class EchoResponse:
    def __init__(self, content_type: str, parts: Iterator[bytes]):
        self.status = 200
        self.content_type = content_type
        self._parts = parts

    def chunks(self) -> Iterator[bytes]:
        yield from self._parts

    def read(self, limit: int) -> bytes:
        return b"".join(self._parts)

    def close(self) -> None:
        pass


class EchoUpstream:
    def send(self, *, route: str, body: dict, stream: bool, max_output: int) -> EchoResponse:
        input_tokens = max(1, len(_words(_texts(body))))
        if route == COUNT_TOKENS:
            return self._json({"input_tokens": input_tokens})
        if route == EMBEDDINGS:
            return self._json(self._embeddings(body))
        reply = ["Echo:", *_last_user_text(body).split()]
        truncated = len(reply) > max_output
        reply = reply[:max_output]
        model = body.get("model", "echo")
        if route == CHAT:
            build = self._chat_stream if stream else self._chat
        elif route == RESPONSES:
            build = self._responses_stream if stream else self._responses
        else:
            build = self._messages_stream if stream else self._messages
        result = build(model, reply, input_tokens, truncated, body)
        return EchoResponse("text/event-stream", result) if stream else self._json(result)

    @staticmethod
    def _json(data: dict) -> EchoResponse:
        return EchoResponse("application/json", iter([json.dumps(data).encode()]))

    @staticmethod
    def _id() -> str:
        return hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:24]

    def _embeddings(self, body: dict) -> dict:
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 8
        data, tokens = [], 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += max(1, len(text.split()) if isinstance(item, str) else len(item))
            digest = hashlib.sha256(text.encode()).digest()
            vector = [(digest[i % 32] - 128) / 128 for i in range(max(1, min(dims, 4096)))]
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return {"object": "list", "data": data, "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def _chat(self, model, reply, input_tokens, truncated, body):
        return {
            "id": f"chatcmpl-echo{self._id()}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(reply), "refusal": None},
                         "logprobs": None, "finish_reason": "length" if truncated else "stop"}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": len(reply),
                      "total_tokens": input_tokens + len(reply), "prompt_tokens_details": {"cached_tokens": 0}},
        }

    def _chat_stream(self, model, reply, input_tokens, truncated, body):
        base = {"id": f"chatcmpl-echo{self._id()}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model}
        yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "finish_reason": None}]})
        for i, word in enumerate(reply):
            yield _sse({**base, "choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word},
                                             "finish_reason": None}]})
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length" if truncated else "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse({**base, "choices": [], "usage": {
                "prompt_tokens": input_tokens, "completion_tokens": len(reply),
                "total_tokens": input_tokens + len(reply), "prompt_tokens_details": {"cached_tokens": 0}}})
        yield b"data: [DONE]\n\n"

    def _response_object(self, rid, model, reply, input_tokens, truncated, status):
        text = " ".join(reply)
        done = status != "in_progress"
        return {
            "id": rid, "object": "response", "created_at": int(time.time()), "status": status,
            "model": model, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if truncated and done else None,
            "output": [{"type": "message", "id": f"msg_{rid[5:]}", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}] if done else [],
            "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": len(reply), "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": input_tokens + len(reply)} if done else None,
        }

    def _responses(self, model, reply, input_tokens, truncated, body):
        return self._response_object(f"resp_{self._id()}", model, reply, input_tokens, truncated,
                                     "incomplete" if truncated else "completed")

    def _responses_stream(self, model, reply, input_tokens, truncated, body):
        rid = f"resp_{self._id()}"
        msg_id = f"msg_{rid[5:]}"
        seq = iter(range(10**9))
        final = "incomplete" if truncated else "completed"
        yield _sse({"type": "response.created", "sequence_number": next(seq),
                    "response": self._response_object(rid, model, reply, input_tokens, truncated, "in_progress")},
                   "response.created")
        item = {"type": "message", "id": msg_id, "status": "in_progress", "role": "assistant", "content": []}
        yield _sse({"type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0,
                    "item": item}, "response.output_item.added")
        part = {"type": "output_text", "text": "", "annotations": []}
        yield _sse({"type": "response.content_part.added", "sequence_number": next(seq), "item_id": msg_id,
                    "output_index": 0, "content_index": 0, "part": part}, "response.content_part.added")
        for i, word in enumerate(reply):
            yield _sse({"type": "response.output_text.delta", "sequence_number": next(seq), "item_id": msg_id,
                        "output_index": 0, "content_index": 0, "delta": word if i == 0 else " " + word,
                        "logprobs": []}, "response.output_text.delta")
        text = " ".join(reply)
        yield _sse({"type": "response.output_text.done", "sequence_number": next(seq), "item_id": msg_id,
                    "output_index": 0, "content_index": 0, "text": text, "logprobs": []},
                   "response.output_text.done")
        done = self._response_object(rid, model, reply, input_tokens, truncated, final)
        yield _sse({"type": f"response.{final}", "sequence_number": next(seq), "response": done},
                   f"response.{final}")

    def _messages(self, model, reply, input_tokens, truncated, body):
        return {
            "id": f"msg_echo{self._id()}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": " ".join(reply)}],
            "stop_reason": "max_tokens" if truncated else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": len(reply),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }

    def _messages_stream(self, model, reply, input_tokens, truncated, body):
        message = {**self._messages(model, [], input_tokens, False, body), "stop_reason": None}
        message["usage"] = {**message["usage"], "output_tokens": 1}
        yield _sse({"type": "message_start", "message": message}, "message_start")
        yield _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                   "content_block_start")
        for i, word in enumerate(reply):
            yield _sse({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": word if i == 0 else " " + word}},
                       "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield _sse({"type": "message_delta", "delta": {"stop_reason": "max_tokens" if truncated else "end_turn",
                                                       "stop_sequence": None},
                    "usage": {"output_tokens": len(reply)}}, "message_delta")
        yield _sse({"type": "message_stop"}, "message_stop")
