"""Anthropic's Messages API over an upstream that speaks OpenAI chat completions. Pure.

Requests go from Anthropic's shape to chat's, answers and stream events come back the other way.
docs/translation.md lists what maps, what is approximated and what is refused.
"""
import hashlib
import json
from typing import Any, Optional

from ..errors import _, _l
from ..protocols import CHAT
from .common import (DONE, Event, anthropic_usage, arguments_object, classes, items, need, new_id, reasoning_of,
                     refuse, said, text_of, word)

# Dialects whose chat API takes OpenAI's `reasoning_effort`; others think by model (deepseek-reasoner)
# or by a switch of their own (DashScope's enable_thinking).
EFFORT_DIALECTS = ("openai", "openrouter", "xai", "generic-openai")
# Dialects that take `max_completion_tokens` (OpenAI's reasoning models refuse `max_tokens`).
COMPLETION_TOKENS_DIALECTS = ("openai", "openrouter")
# Dialects that want an assistant turn's reasoning back as its `reasoning_content`: DeepSeek's thinking
# mode refuses a tool-call turn without it (400 "Missing reasoning_content field in the assistant message";
# api-docs.deepseek.com/guides/thinking_mode#tool-calls). Others refuse or ignore it: it stays behind.
REASONING_BACK_DIALECTS = ("deepseek",)
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


# Anthropic's error types; an upstream error of another type is an api_error.
ERROR_TYPES = ("invalid_request_error", "authentication_error", "permission_error", "not_found_error",
               "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error")
USER_ID_CHARS = 64  # OpenAI's limit on an end-user identifier


def end_user(user_id: str) -> str:
    """An end user's id as chat's `user`: as it is when short, else a stable digest of it (Claude Code
    sends a JSON object of about 150 characters)."""
    if len(user_id) <= USER_ID_CHARS:
        return user_id
    return "sha256:" + hashlib.sha256(user_id.encode()).hexdigest()[:USER_ID_CHARS - 7]


def effort(budget: int) -> str:
    """Anthropic's thinking budget as OpenAI's reasoning effort (docs/translation.md)."""
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _image(source: Any, where: str) -> dict:
    need(isinstance(source, dict), f"{where}.source", _l("an object"), source)
    if source.get("type") == "base64":
        need(isinstance(source.get("data"), str) and isinstance(source.get("media_type"), str), f"{where}.source",
             _l("base64 data with its media_type"), source)
        return {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
    if source.get("type") == "url":
        need(isinstance(source.get("url"), str), f"{where}.source.url", _l("a string"), source.get("url"))
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise refuse(_("%(where)s: an image by %(kind)s cannot be passed to this model's upstream; send it as base64 "
                   "data or a URL.", where=where, kind=str(source.get("type"))))


def _document(block: dict, where: str, dialect: str) -> dict:
    source = block.get("source")
    need(isinstance(source, dict), f"{where}.source", _l("an object"), source)
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        title = block.get("title")
        return {"type": "text", "text": f"{title}\n\n{source['data']}" if isinstance(title, str) else source["data"]}
    if source.get("type") == "base64" and dialect in COMPLETION_TOKENS_DIALECTS and isinstance(source.get("data"), str):
        media = source.get("media_type") or "application/pdf"
        title = block.get("title") if isinstance(block.get("title"), str) else "document.pdf"
        return {"type": "file", "file": {"filename": title, "file_data": f"data:{media};base64,{source['data']}"}}
    raise refuse(_("%(where)s: this model's upstream takes documents only as plain text; send the document's "
                   "text instead.", where=where))


def _user_parts(blocks: list, where: str, dialect: str) -> tuple[list, list]:
    """(tool messages, content parts) of a user turn: tool results become chat's tool messages, which
    come first; images inside a tool result follow in the user's parts (chat's tool messages hold text)."""
    tools, parts = [], []
    for index, block in enumerate(blocks):
        at = f"{where}.content[{index}]"
        need(isinstance(block, dict), at, _l("a content block (an object)"), block)
        kind = block.get("type")
        if kind == "text":
            need(isinstance(block.get("text"), str), f"{at}.text", _l("a string"), block.get("text"))
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image(block.get("source"), at))
        elif kind == "document":
            parts.append(_document(block, at, dialect))
        elif kind == "tool_result":
            need(isinstance(block.get("tool_use_id"), str), f"{at}.tool_use_id", _l("a string"),
                 block.get("tool_use_id"))
            text, images = _tool_result(block.get("content"), at)
            if block.get("is_error") is True:
                text = f"Error: {text}" if text else "Error"
            tools.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            parts.extend(images)
        else:
            raise refuse(_("%(where)s: content of type %(kind)s cannot be passed to this model's upstream, which "
                           "speaks OpenAI's chat completions.", where=at, kind=json.dumps(kind)))
    return tools, parts


def _tool_result(content: Any, where: str) -> tuple[str, list]:
    if content is None or isinstance(content, str):
        return content or "", []
    need(isinstance(content, list), f"{where}.content", _l("a string or a list of blocks"), content)
    texts, images = [], []
    for index, block in enumerate(content):
        at = f"{where}.content[{index}]"
        need(isinstance(block, dict), at, _l("a content block (an object)"), block)
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "image":
            images.append(_image(block.get("source"), at))
        else:
            raise refuse(_("%(where)s: a tool result may hold text and images here, not %(kind)s.", where=at,
                           kind=json.dumps(block.get("type"))))
    return "\n".join(texts), images


def _assistant(blocks: Any, where: str, dialect: str) -> dict:
    if isinstance(blocks, str):
        return {"role": "assistant", "content": blocks}
    texts, calls, thoughts = [], [], []
    for index, block in enumerate(blocks):
        at = f"{where}.content[{index}]"
        need(isinstance(block, dict), at, _l("a content block (an object)"), block)
        kind = block.get("type")
        if kind == "text":
            need(isinstance(block.get("text"), str), f"{at}.text", _l("a string"), block.get("text"))
            texts.append(block["text"])
        elif kind == "tool_use":
            need(isinstance(block.get("id"), str) and isinstance(block.get("name"), str), at,
                 _l("a tool_use with a string id and name"), block)
            tool_input = block.get("input", {})
            need(isinstance(tool_input, dict), f"{at}.input", _l("an object"), tool_input)
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"],
                                       "arguments": json.dumps(tool_input, ensure_ascii=False)}})
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
        elif kind in ("thinking", "redacted_thinking"):
            continue  # nothing a chat upstream can read
        else:
            raise refuse(_("%(where)s: content of type %(kind)s cannot be passed to this model's upstream, which "
                           "speaks OpenAI's chat completions.", where=at, kind=json.dumps(kind)))
    message: dict = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if thoughts and dialect in REASONING_BACK_DIALECTS:
        message["reasoning_content"] = "".join(thoughts)
    return message


def _messages(document: dict, dialect: str) -> list:
    out = []
    system = document.get("system")
    if system is not None:
        text = text_of(system, "system")
        if text:
            out.append({"role": "system", "content": text})
    messages = document.get("messages")
    need(isinstance(messages, list), "messages", _l("a list"), messages)
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        need(isinstance(message, dict), where, _l("an object"), message)
        role, content = message.get("role"), message.get("content")
        need(isinstance(content, (str, list)), f"{where}.content", _l("a string or a list of blocks"), content)
        if role == "assistant":
            out.append(_assistant(content, where, dialect))
        elif role == "user":
            if isinstance(content, str):
                out.append({"role": "user", "content": content})
                continue
            tools, parts = _user_parts(content, where, dialect)
            out.extend(tools)
            if parts:
                plain = all(p["type"] == "text" for p in parts)
                out.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if plain else parts})
        elif role == "system":
            # Claude Code's mid-conversation system messages (beta mid-conversation-system-2026-04-07):
            # chat takes a system message anywhere in the conversation.
            text = text_of(content, f"{where}.content")
            if text:
                out.append({"role": "system", "content": text})
        else:
            raise refuse(_("%(where)s.role must be \"user\" or \"assistant\", got %(role)s.", where=where,
                           role=json.dumps(role)))
    return out


def _tools(tools: Any) -> list:
    need(isinstance(tools, list), "tools", _l("a list"), tools)
    out = []
    for index, tool in enumerate(tools):
        need(isinstance(tool, dict), f"tools[{index}]", _l("an object"), tool)
        kind = tool.get("type")
        if kind not in (None, "custom") or "input_schema" not in tool:
            raise refuse(_("tools[%(index)s]: %(kind)s is a tool that runs on Anthropic's servers; this model's "
                           "upstream cannot run it. Leave it out, or use a model served by Anthropic.",
                           index=index, kind=json.dumps(kind or tool.get("name"))))
        need(isinstance(tool.get("name"), str), f"tools[{index}].name", _l("a string"), tool.get("name"))
        need(isinstance(tool["input_schema"], dict), f"tools[{index}].input_schema", _l("an object"),
             tool["input_schema"])
        function = {"name": tool["name"], "parameters": tool["input_schema"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, chat: dict) -> None:
    need(isinstance(choice, dict), "tool_choice", _l("an object"), choice)
    kind = choice.get("type")
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool":
        need(isinstance(choice.get("name"), str), "tool_choice.name", _l("a string"), choice.get("name"))
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise refuse(_("tool_choice.type must be \"auto\", \"any\", \"tool\" or \"none\", got %(kind)s.",
                       kind=json.dumps(kind)))
    if choice.get("disable_parallel_tool_use") is True and chat.get("tools"):
        chat["parallel_tool_calls"] = False
    if not chat.get("tools"):  # OpenAI refuses a tool_choice without tools (the choice was checked all the same)
        chat.pop("tool_choice")


def _thinking(thinking: Any, chat: dict, dialect: str) -> None:
    need(isinstance(thinking, dict), "thinking", _l("an object"), thinking)
    if thinking.get("type") != "enabled":
        return
    budget = thinking.get("budget_tokens")
    budget = budget if isinstance(budget, int) and not isinstance(budget, bool) else 4096
    if dialect in EFFORT_DIALECTS:
        chat["reasoning_effort"] = effort(budget)
    elif dialect == "dashscope":
        chat["enable_thinking"] = True
        chat["thinking_budget"] = budget
    # deepseek and moonshot: the model decides (deepseek-reasoner always thinks); nothing to send.


def request(document: dict, *, dialect: str, max_output: int) -> dict:
    """The chat request for an Anthropic Messages request (already checked and capped by proxy.rewrite)."""
    chat: dict = {"model": document.get("model"), "messages": _messages(document, dialect)}
    limit = "max_completion_tokens" if dialect in COMPLETION_TOKENS_DIALECTS else "max_tokens"
    chat[limit] = max_output
    if document.get("tools"):
        chat["tools"] = _tools(document["tools"])
    if document.get("tool_choice") is not None:
        _tool_choice(document["tool_choice"], chat)
    for name in ("temperature", "top_p"):
        if document.get(name) is not None:
            chat[name] = document[name]
    stops = document.get("stop_sequences")
    if stops:
        need(isinstance(stops, list) and all(isinstance(s, str) for s in stops), "stop_sequences",
             _l("a list of strings"), stops)
        chat["stop"] = stops
    if document.get("thinking") is not None:
        _thinking(document["thinking"], chat, dialect)
    metadata = document.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and dialect in EFFORT_DIALECTS:
        chat["user"] = end_user(metadata["user_id"])
    tier = document.get("service_tier")
    if tier is not None:
        need(isinstance(tier, str), "service_tier", _l("a string"), tier)
        chat["service_tier"] = {"standard_only": "default"}.get(tier, tier)
    if document.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat



def response(document: dict, *, model: str, dialect: str) -> dict:
    """The Anthropic message for a complete chat completion."""
    choices = document.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = []
    thought = reasoning_of(message)
    if thought:
        content.append({"type": "thinking", "thinking": thought, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):  # some upstreams answer with parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict) and isinstance(p.get("text"), str))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        text = (text or "") + message["refusal"]
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in items(message.get("tool_calls")):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        content.append({"type": "tool_use", "id": call.get("id") or new_id("toolu_"),
                        "name": word(function.get("name")) or "",
                        "input": arguments_object(function.get("arguments"), "tool arguments", lenient=True)})
    chat_id = document.get("id") if isinstance(document.get("id"), str) else None
    return {"id": f"msg_{chat_id.removeprefix('chatcmpl-')}" if chat_id else new_id("msg_"), "type": "message",
            "role": "assistant", "model": model, "content": content,
            "stop_reason": STOP_REASONS.get(word(choice.get("finish_reason")), "end_turn"), "stop_sequence": None,
            "usage": anthropic_usage(classes(CHAT, document.get("usage"), dialect, document))}


class Events:
    """OpenAI chat chunks in, Anthropic's stream events out.

    Blocks are opened as content arrives and closed when another kind begins, so exactly one is
    open at a time, as Anthropic's own streams do. The usage comes in chat's last chunk, after the
    finish reason; message_delta and message_stop go out at "[DONE]", the upstream's last event.
    """

    def __init__(self, *, model: str, dialect: str):
        self.model, self.dialect = model, dialect
        self.started = self.ended = False
        self.index = -1                    # the open block's index, when `open` is set
        self.open: Optional[str] = None    # "text", "thinking" or ("tool", chat index)
        self.tools: dict = {}              # chat tool-call index -> its block's index (closed or open)
        self.stop_reason: Optional[str] = None
        self.usage = None

    def _start(self, chunk: dict) -> list[Event]:
        self.started = True
        chat_id = chunk.get("id") if isinstance(chunk.get("id"), str) else None
        message = {"id": f"msg_{chat_id.removeprefix('chatcmpl-')}" if chat_id else new_id("msg_"),
                   "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": anthropic_usage(None)}
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        self.open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _open(self, kind, block: dict) -> list[Event]:
        events = self._close()
        self.index += 1
        self.open = kind
        return events + [("content_block_start", {"type": "content_block_start", "index": self.index,
                                                  "content_block": block})]

    def _delta(self, delta: dict) -> list[Event]:
        return [("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})]

    def _tool(self, call: dict, position: int) -> list[Event]:
        where = call.get("index") if isinstance(call.get("index"), int) else position
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        events = []
        if where not in self.tools:
            events += self._open(("tool", where), {"type": "tool_use", "id": call.get("id") or new_id("toolu_"),
                                                   "name": word(function.get("name")) or "", "input": {}})
            self.tools[where] = self.index
        elif self.open != ("tool", where):
            # Anthropic's blocks are one at a time: arguments for a block already closed cannot follow.
            raise refuse(_("The upstream interleaved the arguments of several tool calls, which Anthropic's "
                           "stream format cannot carry; call again without streaming."))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events += self._delta({"type": "input_json_delta", "partial_json": arguments})
        return events

    def feed(self, name: Optional[str], data: Any) -> list[Event]:
        if data == DONE:
            return self._end()
        if not isinstance(data, dict):
            return []
        if isinstance(data.get("error"), (dict, str)):
            error = data["error"]
            message = error.get("message") if isinstance(error, dict) else error
            kind = error.get("type") if isinstance(error, dict) else None
            return [("error", {"type": "error", "error": {"type": kind if kind in ERROR_TYPES else "api_error",
                                                          "message": str(message)}})]
        events = [] if self.started else self._start(data)
        for choice in items(data.get("choices")):
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            thought = reasoning_of(delta)
            if thought:
                if self.open != "thinking":
                    events += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                events += self._delta({"type": "thinking_delta", "thinking": thought})
            # a refusal streams as text, as a complete answer's does
            text = said(delta)
            if text:
                if self.open != "text":
                    events += self._open("text", {"type": "text", "text": ""})
                events += self._delta({"type": "text_delta", "text": text})
            for position, call in enumerate(items(delta.get("tool_calls"))):
                if isinstance(call, dict):
                    events += self._tool(call, position)
            if isinstance(choice.get("usage"), dict):  # Moonshot's place for it
                self.usage = classes(CHAT, choice["usage"], self.dialect, data)
            if choice.get("finish_reason"):
                events += self._close()
                self.stop_reason = STOP_REASONS.get(word(choice["finish_reason"]), "end_turn")
        if isinstance(data.get("usage"), dict):
            self.usage = classes(CHAT, data["usage"], self.dialect, data)
        return events

    def _end(self) -> list[Event]:
        if self.ended:
            return []
        self.ended = True
        events = [] if self.started else self._start({})
        events += self._close()
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": self.stop_reason or "end_turn",
                                                   "stop_sequence": None},
                                         "usage": anthropic_usage(self.usage)}))
        return events + [("message_stop", {"type": "message_stop"})]

    def finish(self) -> list[Event]:
        """The upstream's stream ended: nothing more to say (a stream cut short gets the relay's error)."""
        return []

