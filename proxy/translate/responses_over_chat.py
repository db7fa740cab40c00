"""OpenAI's Responses API over an upstream that speaks only chat completions. Pure and stateless.

Enough of the Responses API for the Codex CLI and the SDKs: instructions, messages, images,
function and custom tools with their calls and outputs, JSON output, reasoning effort, and the
full stream of events. Server-side state (store, previous_response_id, conversations, background
runs) and tools that run on OpenAI's servers are refused with a clear error.
docs/translation.md lists what maps, what is approximated and what is refused.
"""
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import _, _l
from ..protocols import CHAT
from .common import DONE, Event, classes, items, need, new_id, now, reasoning_of, refuse, responses_usage, said, word
from .messages_over_chat import COMPLETION_TOKENS_DIALECTS, EFFORT_DIALECTS, REASONING_BACK_DIALECTS

STATUS = {"length": "incomplete", "content_filter": "incomplete"}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
CUSTOM_INPUT = "input"  # a custom (free-form) tool is a function with one string parameter of this name
# Tools that run on OpenAI's servers. A chat-only upstream cannot run them, so they are left out of the
# request (the model cannot call them); Codex sends web_search with every request.
HOSTED = ("web_search", "web_search_preview", "file_search", "code_interpreter", "computer_use_preview",
          "image_generation", "local_shell", "mcp", "tool_search")


@dataclass
class Tools:
    """What an answer needs to know of the request's tools: which are custom (free-form), and which
    functions came from a namespace (flattened to one chat function named NAMESPACE__NAME)."""

    custom: set = field(default_factory=set)
    namespaced: dict = field(default_factory=dict)  # chat function name -> (namespace, name)

    def __contains__(self, name: object) -> bool:
        return name in self.custom

    def flat(self, namespace: Optional[str], name: str) -> str:
        return f"{namespace}__{name}" if namespace else name


def _refuse_state(document: dict) -> None:
    if document.get("store") is True:
        raise refuse(_("store must be false for this model: its upstream speaks chat completions, so the gateway "
                       "keeps no responses to come back to. Send the whole conversation each time, with store: "
                       "false."))
    for name in ("previous_response_id", "conversation", "prompt"):
        if document.get(name) is not None:
            raise refuse(_("%(field)s is not supported for this model: its upstream speaks chat completions and the "
                           "gateway keeps no server-side state. Send the whole conversation in input instead.",
                           field=name))
    if document.get("background") is True:
        raise refuse(_("background responses are not supported for this model; leave background out."))


def _part(part: Any, where: str, dialect: str) -> dict:
    need(isinstance(part, dict), where, _l("a content part (an object)"), part)
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        need(isinstance(part.get("text"), str), f"{where}.text", _l("a string"), part.get("text"))
        return {"type": "text", "text": part["text"]}
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        image = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and isinstance(part.get("file_data"), str) and dialect in ("openai", "openrouter"):
        return {"type": "file", "file": {"filename": part.get("filename") or "file", "file_data": part["file_data"]}}
    raise refuse(_("%(where)s: content of type %(kind)s cannot be passed to this model's upstream (images by URL "
                   "or data URL and text only; no uploaded file ids).", where=where, kind=json.dumps(kind)))


def _content(content: Any, where: str, dialect: str):
    if isinstance(content, str):
        return content
    need(isinstance(content, list), f"{where}.content", _l("a string or a list of parts"), content)
    parts = [_part(part, f"{where}.content[{i}]", dialect) for i, part in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any, where: str) -> str:
    if isinstance(output, str):
        return output
    need(isinstance(output, list), where, _l("a string or a list of parts"), output)
    return "".join(p["text"] for p in output if isinstance(p, dict) and isinstance(p.get("text"), str))


def _call_message(out: list) -> dict:
    """The assistant message a call joins: the last one, if nothing came after it but other calls."""
    if out and out[-1]["role"] == "assistant":
        return out[-1]
    out.append({"role": "assistant", "content": None})
    return out[-1]


def _thought(item: dict) -> str:
    """A reasoning item's text: its reasoning_text content (as this gateway streams it), else its summary."""
    texts = [[part["text"] for part in item.get(field) if isinstance(part, dict) and isinstance(part.get("text"), str)]
             if isinstance(item.get(field), list) else [] for field in ("content", "summary")]
    return "".join(texts[0]) or "\n".join(texts[1])


def _reasoned(out: list) -> Optional[dict]:
    """The assistant message a reasoning item began, while nothing else has joined it."""
    last = out[-1] if out else {}
    return last if "reasoning_content" in last and last["content"] == "" and "tool_calls" not in last else None


def _input(document: dict, dialect: str) -> list:
    out = []
    instructions = document.get("instructions")
    if instructions is not None:
        need(isinstance(instructions, str), "instructions", _l("a string"), instructions)
        if instructions:
            out.append({"role": "system", "content": instructions})
    items = document.get("input")
    if isinstance(items, str):
        return out + [{"role": "user", "content": items}]
    need(isinstance(items, list), "input", _l("a string or a list of items"), items)
    for index, item in enumerate(items):
        where = f"input[{index}]"
        need(isinstance(item, dict), where, _l("an item (an object)"), item)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise refuse(_("%(where)s.role must be \"user\", \"assistant\", \"system\" or \"developer\", got "
                               "%(role)s.", where=where, role=json.dumps(role)))
            content = _content(item.get("content"), where, dialect)
            if role == "assistant" and not isinstance(content, str):
                content = "".join(p.get("text", "") for p in content)
            if role == "assistant" and _reasoned(out) is not None:
                out[-1]["content"] = content
                continue
            out.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind in ("function_call", "custom_tool_call"):
            need(isinstance(item.get("call_id"), str) and isinstance(item.get("name"), str), where,
                 _l("a call with a string call_id and name"), item)
            if kind == "function_call":
                arguments = item.get("arguments", "{}")
                need(isinstance(arguments, str), f"{where}.arguments", _l("a string"), arguments)
            else:
                need(isinstance(item.get("input"), str), f"{where}.input", _l("a string"), item.get("input"))
                arguments = json.dumps({CUSTOM_INPUT: item["input"]}, ensure_ascii=False)
            namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
            message = _call_message(out)
            message.setdefault("tool_calls", []).append(
                {"id": item["call_id"], "type": "function",
                 "function": {"name": Tools().flat(namespace, item["name"]), "arguments": arguments}})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            need(isinstance(item.get("call_id"), str), f"{where}.call_id", _l("a string"), item.get("call_id"))
            out.append({"role": "tool", "tool_call_id": item["call_id"],
                        "content": _output_text(item.get("output", ""), f"{where}.output")})
        elif kind == "reasoning":
            # Back to the upstreams that want it (REASONING_BACK_DIALECTS), as the reasoning of the
            # assistant message that follows; other chat APIs take none back.
            thought = _thought(item)
            if thought and dialect in REASONING_BACK_DIALECTS:
                out.append({"role": "assistant", "content": "", "reasoning_content": thought})
        elif kind == "item_reference":
            raise refuse(_("%(where)s: item references need responses stored on the server, which this model's "
                           "upstream does not keep; send the items themselves.", where=where))
        else:
            raise refuse(_("%(where)s: items of type %(kind)s cannot be passed to this model's upstream, which "
                           "speaks chat completions.", where=where, kind=json.dumps(kind)))
    return out


def _function(tool: dict, where: str, name: str) -> dict:
    need(isinstance(tool.get("name"), str), f"{where}.name", _l("a string"), tool.get("name"))
    function = {"name": name, "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _custom(tool: dict, where: str) -> dict:
    need(isinstance(tool.get("name"), str), f"{where}.name", _l("a string"), tool.get("name"))
    grammar = tool.get("format")
    hint = ""
    if isinstance(grammar, dict) and isinstance(grammar.get("definition"), str):
        hint = f" It follows this {grammar.get('syntax') or 'grammar'}:\n{grammar['definition']}"
    function = {"name": tool["name"], "parameters": {
        "type": "object", "required": [CUSTOM_INPUT], "additionalProperties": False,
        "properties": {CUSTOM_INPUT: {"type": "string", "description": f"The tool's raw input.{hint}"}}}}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tools(tools: Any) -> tuple[list, Tools]:
    """(chat tools, what the answer needs to know of them)."""
    need(isinstance(tools, list), "tools", _l("a list"), tools)
    out, names = [], Tools()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        need(isinstance(tool, dict), where, _l("an object"), tool)
        kind = tool.get("type")
        if kind == "function":
            out.append(_function(tool, where, tool.get("name")))
        elif kind == "custom":
            out.append(_custom(tool, where))
            names.custom.add(tool["name"])
        elif kind == "namespace":
            need(isinstance(tool.get("name"), str) and isinstance(tool.get("tools"), list), where,
                 _l("a namespace with a name and a list of tools"), tool)
            for number, inner in enumerate(tool["tools"]):
                at = f"{where}.tools[{number}]"
                need(isinstance(inner, dict) and inner.get("type") == "function", at, _l("a function tool"), inner)
                flat = names.flat(tool["name"], str(inner.get("name")))
                out.append(_function(inner, at, flat))
                names.namespaced[flat] = (tool["name"], inner["name"])
        elif kind in HOSTED:
            continue
        else:
            raise refuse(_("%(where)s: tools of type %(kind)s cannot be passed to this model's upstream, which speaks "
                           "chat completions; use function tools.", where=where, kind=json.dumps(kind)))
    return out, names


def _tool_choice(choice: Any):
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and isinstance(choice.get("name"), str):
        namespace = choice.get("namespace") if isinstance(choice.get("namespace"), str) else None
        return {"type": "function", "function": {"name": Tools().flat(namespace, choice["name"])}}
    if isinstance(choice, dict) and choice.get("type") in HOSTED:
        raise refuse(_("tool_choice: %(kind)s runs on OpenAI's servers, which this model's upstream cannot reach.",
                       kind=json.dumps(choice["type"])))
    raise refuse(_("tool_choice must be \"auto\", \"none\", \"required\" or a function by name for this model."))


def _text_format(text: Any) -> Optional[dict]:
    need(isinstance(text, dict), "text", _l("an object"), text)
    spec = text.get("format")
    if spec is None or (isinstance(spec, dict) and spec.get("type") == "text"):
        return None
    need(isinstance(spec, dict), "text.format", _l("an object"), spec)
    if spec.get("type") == "json_object":
        return {"type": "json_object"}
    if spec.get("type") == "json_schema":
        schema = {"name": spec.get("name") or "answer", "schema": spec.get("schema") or {}}
        if spec.get("strict") is not None:
            schema["strict"] = spec["strict"]
        return {"type": "json_schema", "json_schema": schema}
    raise refuse(_("text.format.type must be \"text\", \"json_object\" or \"json_schema\"."))


def request(document: dict, *, dialect: str, max_output: int) -> tuple[dict, Tools]:
    """(the chat request for a Responses request, what its answer needs to know of the tools)."""
    _refuse_state(document)
    chat: dict = {"model": document.get("model"), "messages": _input(document, dialect)}
    chat["max_completion_tokens" if dialect in COMPLETION_TOKENS_DIALECTS else "max_tokens"] = max_output
    custom = Tools()
    if document.get("tools"):
        tools, custom = _tools(document["tools"])
    if document.get("tools") and tools:  # not when every tool was a hosted one, left out
        chat["tools"] = tools
        if document.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(document["tool_choice"])
        if isinstance(document.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = document["parallel_tool_calls"]
    for name in ("temperature", "top_p", "service_tier"):
        if document.get(name) is not None:
            chat[name] = document[name]
    if document.get("text") is not None:
        response_format = _text_format(document["text"])
        if response_format is not None:
            chat["response_format"] = response_format
    reasoning = document.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str) and dialect in EFFORT_DIALECTS:
        chat["reasoning_effort"] = reasoning["effort"]
    user = document.get("safety_identifier") or document.get("user")
    if isinstance(user, str):
        chat["user"] = user[:256]
    if document.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat, custom


def _echo(request_document: dict) -> dict:
    """The request's settings a Responses object repeats back."""
    return {key: request_document.get(key, default) for key, default in (
        ("instructions", None), ("max_output_tokens", None), ("parallel_tool_calls", True), ("temperature", None),
        ("tool_choice", "auto"), ("tools", []), ("top_p", None), ("metadata", {}))} | {"store": False}


def _function_item(call_id: str, name: str, arguments: str, custom: Tools, status: str = "completed",
                   item_id: Optional[str] = None) -> dict:
    if name in getattr(custom, "namespaced", {}):
        namespace, inner = custom.namespaced[name]
        return {"id": item_id or new_id("fc_"), "type": "function_call", "status": status, "call_id": call_id,
                "name": inner, "namespace": namespace, "arguments": arguments}
    if name in custom:
        try:
            value = json.loads(arguments).get(CUSTOM_INPUT) if arguments else ""
        except (ValueError, AttributeError):
            value = arguments
        return {"id": item_id or new_id("ctc_"), "type": "custom_tool_call", "status": status, "call_id": call_id,
                "name": name, "input": value if isinstance(value, str) else arguments}
    return {"id": item_id or new_id("fc_"), "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


def response(document: dict, *, model: str, dialect: str, custom: Tools, request_document: dict) -> dict:
    """The Responses object for a complete chat completion."""
    choices = document.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    output = []
    thought = reasoning_of(message)
    if thought:
        output.append({"id": new_id("rs_"), "type": "reasoning", "summary": [],
                       "content": [{"type": "reasoning_text", "text": thought}]})
    text = said(message)
    if text:
        output.append({"id": new_id("msg_"), "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]})
    for call in items(message.get("tool_calls")):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            output.append(_function_item(call.get("id") or new_id("call_"), word(function.get("name")) or "",
                                         arguments if isinstance(arguments, str) else "{}", custom))
    finish = word(choice.get("finish_reason"))
    status = STATUS.get(finish, "completed")
    return {"id": new_id("resp_"), "object": "response", "created_at": now(), "status": status,
            "error": None, "incomplete_details": {"reason": INCOMPLETE[finish]} if finish in INCOMPLETE else None,
            "model": model, "output": output, **_echo(request_document),
            "usage": responses_usage(classes(CHAT, document.get("usage"), dialect, document))}


class Events:
    """OpenAI chat chunks in, Responses stream events out, each with its sequence number.

    One output item is open at a time (reasoning, then the message, then each call), as the
    Responses API streams them; every item's done event carries it whole, since clients (Codex)
    build their history from those.
    """

    def __init__(self, *, model: str, dialect: str, custom: Tools, request_document: dict):
        self.model, self.dialect, self.custom = model, dialect, custom
        self.request_document = request_document
        self.id, self.created = new_id("resp_"), now()
        self.sequence = 0
        self.started = self.ended = False
        self.output: list = []            # items done
        self.item: Optional[dict] = None  # the open item
        self.text = ""                    # the open item's text (message, reasoning) or arguments (call)
        self.calls: dict = {}             # chat tool-call index -> its item id (open or done)
        self.finish_reason: Optional[str] = None
        self.usage = None

    def _event(self, kind: str, **fields) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return (kind, event)

    def _response(self, status: str, **more) -> dict:
        return {"id": self.id, "object": "response", "created_at": self.created, "status": status, "error": None,
                "incomplete_details": None, "model": self.model, "output": list(self.output),
                **_echo(self.request_document), "usage": None, **more}

    def _begin(self) -> list[Event]:
        self.started = True
        response = self._response("in_progress")
        return [self._event("response.created", response=response),
                self._event("response.in_progress", response=response)]

    def _where(self) -> dict:
        return {"item_id": self.item["id"], "output_index": len(self.output)}

    def _close(self) -> list[Event]:
        item, text = self.item, self.text
        if item is None:
            return []
        events = []
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": []}
            events += [self._event("response.output_text.done", **self._where(), content_index=0, text=text,
                                   logprobs=[]),
                       self._event("response.content_part.done", **self._where(), content_index=0, part=part)]
            item = {**item, "status": "completed", "content": [part]}
        elif item["type"] == "reasoning":
            events.append(self._event("response.reasoning_text.done", **self._where(), content_index=0, text=text))
            item = {**item, "content": [{"type": "reasoning_text", "text": text}]}
        elif item["type"] == "function_call":
            events.append(self._event("response.function_call_arguments.done", **self._where(), arguments=text))
            item = {**item, "status": "completed", "arguments": text}
        else:  # a custom tool call: its input is known only once the arguments are whole
            item = _function_item(item["call_id"], item["name"], text, self.custom, item_id=item["id"])
            events += [self._event("response.custom_tool_call_input.delta", **self._where(), delta=item["input"]),
                       self._event("response.custom_tool_call_input.done", **self._where(), input=item["input"])]
        events.append(self._event("response.output_item.done", output_index=len(self.output), item=item))
        self.output.append(item)
        self.item, self.text = None, ""
        return events

    def _open(self, item: dict) -> list[Event]:
        events = self._close()
        self.item = item
        added = {**item, "content": []} if item["type"] in ("message", "reasoning") else item
        events.append(self._event("response.output_item.added", output_index=len(self.output), item=added))
        if item["type"] == "message":
            events.append(self._event("response.content_part.added", **self._where(), content_index=0,
                                      part={"type": "output_text", "text": "", "annotations": []}))
        return events

    def _call(self, call: dict, position: int) -> list[Event]:
        where = call.get("index") if isinstance(call.get("index"), int) else position
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        events = []
        if where not in self.calls:
            name, call_id = word(function.get("name")) or "", word(call.get("id")) or new_id("call_")
            item = _function_item(call_id, name, "", self.custom, status="in_progress")
            events += self._open(item)
            self.calls[where] = item["id"]
        elif self.item is None or self.item["id"] != self.calls[where]:
            raise refuse(_("The upstream interleaved the arguments of several tool calls, which the Responses "
                           "stream format cannot carry; call again without streaming."))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self.text += arguments
            if self.item["type"] == "function_call":
                events.append(self._event("response.function_call_arguments.delta", **self._where(), delta=arguments))
        return events

    def feed(self, name: Optional[str], data: Any) -> list[Event]:
        if data == DONE:
            return self._end()
        if not isinstance(data, dict):
            return []
        events = [] if self.started else self._begin()
        if isinstance(data.get("error"), (dict, str)):
            error = data["error"]
            message = error.get("message") if isinstance(error, dict) else error
            self.ended = True
            failed = self._response("failed", error={"code": "server_error", "message": str(message)})
            return events + [self._event("response.failed", response=failed)]
        for choice in items(data.get("choices")):
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            thought = reasoning_of(delta)
            if thought:
                if self.item is None or self.item["type"] != "reasoning":
                    events += self._open({"id": new_id("rs_"), "type": "reasoning", "summary": []})
                self.text += thought
                events.append(self._event("response.reasoning_text.delta", **self._where(), content_index=0,
                                          delta=thought))
            # a refusal is said as text (as messages_over_chat says it)
            text = said(delta)
            if text:
                if self.item is None or self.item["type"] != "message":
                    events += self._open({"id": new_id("msg_"), "type": "message", "status": "in_progress",
                                          "role": "assistant"})
                self.text += text
                events.append(self._event("response.output_text.delta", **self._where(), content_index=0, delta=text,
                                          logprobs=[]))
            for position, call in enumerate(items(delta.get("tool_calls"))):
                if isinstance(call, dict):
                    events += self._call(call, position)
            if isinstance(choice.get("usage"), dict):
                self.usage = classes(CHAT, choice["usage"], self.dialect, data)
            if choice.get("finish_reason"):
                events += self._close()
                self.finish_reason = word(choice["finish_reason"]) or "stop"
        if isinstance(data.get("usage"), dict):
            self.usage = classes(CHAT, data["usage"], self.dialect, data)
        return events

    def _end(self) -> list[Event]:
        if self.ended:
            return []
        self.ended = True
        events = ([] if self.started else self._begin()) + self._close()
        status = STATUS.get(self.finish_reason, "completed")
        final = self._response(status, usage=responses_usage(self.usage))
        if self.finish_reason in INCOMPLETE:
            final["incomplete_details"] = {"reason": INCOMPLETE[self.finish_reason]}
        return events + [self._event(f"response.{status}", response=final)]

    def finish(self) -> list[Event]:
        return []
