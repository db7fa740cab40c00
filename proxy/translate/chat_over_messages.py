"""OpenAI chat completions over an upstream that speaks Anthropic's Messages API. Pure.

`response_format` with a JSON schema becomes one forced tool whose input is the answer (Anthropic
models fill a tool's schema reliably); its input comes back as the message's text.
docs/translation.md lists what maps, what is approximated and what is refused.
"""
import json
import re
from typing import Any, Optional

from ..errors import _, _l
from ..protocols import MESSAGES
from .common import (DONE, Event, arguments_object, chat_usage, classes, items, need, new_id, now, refuse, text_of,
                     word)

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                  "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
# OpenAI's reasoning effort as an Anthropic thinking budget (docs/translation.md).
BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
MIN_BUDGET = 1024  # Anthropic's smallest thinking budget
JSON_TOOL = "json_answer"
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,(.*)", re.S)
# Chat fields with no Messages equivalent that change nothing when left out (docs/translation.md).
_IGNORED = ("frequency_penalty", "presence_penalty", "seed", "logit_bias", "prompt_cache_key", "store",
            "safety_identifier", "verbosity")


def _image(part: dict, where: str) -> dict:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    need(isinstance(url, str), f"{where}.image_url.url", _l("a string"), url)
    found = _DATA_URL.fullmatch(url)
    if found:
        return {"type": "image", "source": {"type": "base64", "media_type": found[1], "data": found[2]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _file(part: dict, where: str) -> dict:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    found = _DATA_URL.fullmatch(data) if isinstance(data, str) else None
    if found is None:
        raise refuse(_("%(where)s: files reach this model's upstream only inline, as file_data with a base64 data "
                       "URL.", where=where))
    return {"type": "document", "source": {"type": "base64", "media_type": found[1], "data": found[2]}}


def _blocks(content: Any, where: str) -> list:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    need(isinstance(content, list), f"{where}.content", _l("a string or a list of parts"), content)
    blocks = []
    for index, part in enumerate(content):
        at = f"{where}.content[{index}]"
        need(isinstance(part, dict), at, _l("a content part (an object)"), part)
        kind = part.get("type")
        if kind == "text":
            need(isinstance(part.get("text"), str), f"{at}.text", _l("a string"), part.get("text"))
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part, at))
        elif kind == "file":
            blocks.append(_file(part, at))
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            blocks.append({"type": "text", "text": part["refusal"]})
        else:
            raise refuse(_("%(where)s: content of type %(kind)s cannot be passed to this model's upstream, which "
                           "speaks Anthropic's Messages API.", where=at, kind=json.dumps(kind)))
    return blocks


def _append(out: list, role: str, blocks: list) -> None:
    """Add a turn; Anthropic's turns alternate, so a second one of the same role joins the first."""
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def _messages(messages: Any) -> tuple[list, list]:
    """(system blocks, messages) of a chat conversation."""
    need(isinstance(messages, list), "messages", _l("a list"), messages)
    system, out = [], []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        need(isinstance(message, dict), where, _l("an object"), message)
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            text = text_of(content, f"{where}.content")
            if text:
                system.append({"type": "text", "text": text})
        elif role == "user":
            _append(out, "user", _blocks(content, where))
        elif role == "assistant":
            blocks = [] if content is None else _blocks(content, where)
            if isinstance(message.get("refusal"), str) and message["refusal"]:
                blocks.append({"type": "text", "text": message["refusal"]})
            calls = message.get("tool_calls") or []
            need(isinstance(calls, list), f"{where}.tool_calls", _l("a list"), calls)
            for number, call in enumerate(calls):
                at = f"{where}.tool_calls[{number}]"
                function = call.get("function") if isinstance(call, dict) else None
                need(isinstance(function, dict) and isinstance(function.get("name"), str)
                     and isinstance(call.get("id"), str), at, _l("a function call with an id and a name"), call)
                blocks.append({"type": "tool_use", "id": call["id"], "name": function["name"],
                               "input": arguments_object(function.get("arguments"), f"{at}.function.arguments")})
            _append(out, "assistant", blocks)
        elif role == "tool":
            need(isinstance(message.get("tool_call_id"), str), f"{where}.tool_call_id", _l("a string"),
                 message.get("tool_call_id"))
            _append(out, "user", [{"type": "tool_result", "tool_use_id": message["tool_call_id"],
                                   "content": text_of(content if content is not None else "", f"{where}.content")}])
        else:
            raise refuse(_("%(where)s.role %(role)s cannot be passed to this model's upstream; use \"system\", "
                           "\"user\", \"assistant\" or \"tool\".", where=where, role=json.dumps(role)))
    return system, out


def _tools(tools: Any) -> list:
    need(isinstance(tools, list), "tools", _l("a list"), tools)
    out = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise refuse(_("tools[%(index)s]: only function tools can be passed to this model's upstream.",
                           index=index))
        need(isinstance(function.get("name"), str), f"tools[{index}].function.name", _l("a string"),
             function.get("name"))
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        need(isinstance(schema, dict), f"tools[{index}].function.parameters", _l("an object"), schema)
        converted = {"name": function["name"], "input_schema": schema}
        if isinstance(function.get("description"), str):
            converted["description"] = function["description"]
        out.append(converted)
    return out


def _tool_choice(choice: Any) -> dict:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"type": "tool", "name": function["name"]}
    raise refuse(_("tool_choice must be \"auto\", \"none\", \"required\" or a function by name."))


def _json_schema(response_format: Any, messages: dict) -> Optional[str]:
    """Apply `response_format` to the Messages request; the forced tool's name when there is one."""
    need(isinstance(response_format, dict), "response_format", _l("an object"), response_format)
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        messages.setdefault("system", []).append({"type": "text", "text": "Answer with one JSON object only."})
        return None
    if kind != "json_schema":
        raise refuse(_("response_format.type must be \"text\", \"json_object\" or \"json_schema\"."))
    spec = response_format.get("json_schema")
    need(isinstance(spec, dict) and isinstance(spec.get("schema", {}), dict), "response_format.json_schema",
         _l("an object with a `schema` object"), spec)
    if messages.get("tools"):
        raise refuse(_("response_format with a JSON schema cannot be combined with tools for this model's "
                       "upstream; send one or the other."))
    tool = {"name": JSON_TOOL, "description": spec.get("description") or "Give the answer in this shape.",
            "input_schema": spec.get("schema") or {"type": "object"}}
    messages["tools"] = [tool]
    messages["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
    return JSON_TOOL


def _in_tool_round(messages: list) -> bool:
    """Whether the conversation's last assistant turn called tools (their results follow it)."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            return any(block.get("type") == "tool_use" for block in message["content"])
    return False


def request(document: dict, *, max_output: int) -> tuple[dict, Optional[str]]:
    """(the Messages request for a chat request, the name of the tool that carries a JSON answer)."""
    choices = document.get("n")
    if choices not in (None, 1):
        raise refuse(_("n must be 1 for this model: its upstream makes one completion per call."))
    if document.get("logprobs") is True or document.get("top_logprobs"):
        raise refuse(_("logprobs are not available for this model: its upstream does not report them."))
    if document.get("audio") is not None or document.get("modalities") not in (None, ["text"]):
        raise refuse(_("audio and modalities: audio output is not available for this model; its upstream answers "
                       "with text."))
    system, messages = _messages(document.get("messages"))
    out: dict = {"model": document.get("model"), "messages": messages, "max_tokens": max_output}
    if system:
        out["system"] = system
    if document.get("tools"):
        out["tools"] = _tools(document["tools"])
        if document.get("tool_choice") is not None:
            out["tool_choice"] = _tool_choice(document["tool_choice"])
        if document.get("parallel_tool_calls") is False and out.get("tool_choice", {}).get("type") != "none":
            out.setdefault("tool_choice", {"type": "auto"})["disable_parallel_tool_use"] = True
    json_tool = None
    if document.get("response_format") is not None:
        json_tool = _json_schema(document["response_format"], out)
    temperature = document.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        out["temperature"] = min(temperature, 1)  # OpenAI's range is 0-2, Anthropic's 0-1
    if document.get("top_p") is not None and "temperature" not in out:  # newer Claude models take one of them
        out["top_p"] = document["top_p"]
    stop = document.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    effort = document.get("reasoning_effort")
    # Anthropic refuses thinking with a forced tool (tool_choice any or tool, as a JSON schema answer is),
    # and in a tool round whose last assistant turn does not start with its signed thinking block, which
    # chat cannot carry back: such a round goes without thinking (docs/translation.md).
    forced = out.get("tool_choice", {}).get("type") in ("any", "tool")
    if isinstance(effort, str) and effort in BUDGETS and max_output > MIN_BUDGET and not forced \
            and not _in_tool_round(messages):
        out["thinking"] = {"type": "enabled", "budget_tokens": min(BUDGETS[effort], max_output - 1)}
        out.pop("temperature", None)  # thinking takes the default temperature only
        out.pop("top_p", None)
    if isinstance(document.get("user"), str):
        out["metadata"] = {"user_id": document["user"][:256]}
    tier = document.get("service_tier")
    if tier is not None:
        mapped = {"default": "standard_only", "auto": "auto"}.get(tier) if isinstance(tier, str) else None
        if mapped is None:
            raise refuse(_("service_tier %(tier)s cannot be asked of this model's upstream; send \"auto\" or "
                           "\"default\", or leave it out.", tier=json.dumps(tier)))
        out["service_tier"] = mapped
    if document.get("stream") is True:
        out["stream"] = True
    return out, json_tool


def _finish(stop_reason: Any, json_tool: Optional[str]) -> str:
    if stop_reason == "tool_use" and json_tool:
        return "stop"
    return FINISH_REASONS.get(word(stop_reason), "stop")


def response(document: dict, *, model: str, json_tool: Optional[str] = None) -> dict:
    """The chat completion for a complete Anthropic message."""
    texts, thoughts, calls = [], [], []
    for block in items(document.get("content")):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
        elif kind == "tool_use" and block.get("name") == json_tool and json_tool:
            texts.append(json.dumps(block.get("input", {}), ensure_ascii=False))
        elif kind == "tool_use":
            calls.append({"id": block.get("id") or new_id("call_"), "type": "function",
                          "function": {"name": block.get("name") or "",
                                       "arguments": json.dumps(block.get("input", {}), ensure_ascii=False)}})
    message: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                     "refusal": None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    message_id = document.get("id") if isinstance(document.get("id"), str) else new_id("")
    return {"id": f"chatcmpl-{message_id.removeprefix('msg_')}", "object": "chat.completion", "created": now(),
            "model": model, "choices": [{"index": 0, "message": message, "logprobs": None,
                                         "finish_reason": _finish(document.get("stop_reason"), json_tool)}],
            "usage": chat_usage(classes(MESSAGES, document.get("usage"), "anthropic"))}


class Events:
    """Anthropic's stream events in, OpenAI chat chunks out (and the usage chunk when the client asked)."""

    def __init__(self, *, model: str, wants_usage: bool, json_tool: Optional[str] = None):
        self.model, self.wants_usage, self.json_tool = model, wants_usage, json_tool
        self.id, self.created = new_id("chatcmpl-"), now()
        self.blocks: dict = {}        # Anthropic block index -> ("text" | "thinking" | "json" | tool number)
        self.tools = 0
        self.start_usage: dict = {}   # message_start's usage; message_delta's is cumulative over it
        self.usage = None
        self.finish_reason: Optional[str] = None

    def _chunk(self, delta: dict, finish: Optional[str] = None) -> Event:
        return (None, {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                       "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    def feed(self, name: Optional[str], data: Any) -> list[Event]:
        if not isinstance(data, dict):
            return []
        kind = name or data.get("type")
        if kind == "message_start":
            message = data.get("message") if isinstance(data.get("message"), dict) else {}
            if isinstance(message.get("id"), str):
                self.id = f"chatcmpl-{message['id'].removeprefix('msg_')}"
            if isinstance(message.get("usage"), dict):
                self.start_usage = {k: v for k, v in message["usage"].items() if k != "output_tokens"}
                self.usage = classes(MESSAGES, message["usage"], "anthropic")
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "message_delta":
            delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
            if isinstance(data.get("usage"), dict):
                self.usage = classes(MESSAGES, {**self.start_usage, **data["usage"]}, "anthropic")
            self.finish_reason = _finish(delta.get("stop_reason"), self.json_tool)
            return [self._chunk({}, self.finish_reason)]
        if kind == "message_stop":
            events = []
            if self.wants_usage:
                events.append((None, {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                      "model": self.model, "choices": [], "usage": chat_usage(self.usage)}))
            return events + [(None, DONE)]
        if kind == "error":
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            return [(None, {"error": {"message": str(error.get("message") or "upstream error"),
                                      "type": error.get("type") or "api_error", "param": None, "code": None}})]
        return []  # ping, and events of blocks this translation does not carry

    def _block_start(self, data: dict) -> list[Event]:
        block = data.get("content_block") if isinstance(data.get("content_block"), dict) else {}
        index, kind = data.get("index"), block.get("type")
        if not isinstance(index, int):
            return []
        if kind == "text":
            self.blocks[index] = "text"
            return [self._chunk({"content": block["text"]})] if block.get("text") else []
        if kind == "thinking":
            self.blocks[index] = "thinking"
            return []
        if kind == "tool_use" and self.json_tool and block.get("name") == self.json_tool:
            self.blocks[index] = "json"
            return []
        if kind == "tool_use":
            number = self.tools
            self.tools += 1
            self.blocks[index] = number
            return [self._chunk({"tool_calls": [{"index": number, "id": block.get("id") or new_id("call_"),
                                                 "type": "function",
                                                 "function": {"name": block.get("name") or "", "arguments": ""}}]})]
        return []

    def _block_delta(self, data: dict) -> list[Event]:
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        index = data.get("index")
        target = self.blocks.get(index) if isinstance(index, int) else None
        kind = delta.get("type")
        if kind == "text_delta" and target == "text" and isinstance(delta.get("text"), str):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and target == "thinking" and isinstance(delta.get("thinking"), str):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta" and isinstance(delta.get("partial_json"), str) and delta["partial_json"]:
            if target == "json":
                return [self._chunk({"content": delta["partial_json"]})]
            if isinstance(target, int):
                return [self._chunk({"tool_calls": [{"index": target,
                                                     "function": {"arguments": delta["partial_json"]}}]})]
        return []

    def finish(self) -> list[Event]:
        return []
