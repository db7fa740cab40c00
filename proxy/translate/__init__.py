"""Protocol translation: a client's route carried to an upstream that speaks another protocol.

Which route an upstream is called on (`upstream_route`), and the call's translator when that is not
the client's own: its request out, its answer and stream events back, each a pure function of its
input (proxy/translate/*_over_*.py). Metering reads the upstream's wire format (the pipeline meters
before translating back); the client's route decides only the shape of what goes back.

| client route          | openai upstream        | openai, chat-only | anthropic upstream         |
|-----------------------|------------------------|-------------------|----------------------------|
| /v1/chat/completions  | native                 | native            | chat over messages         |
| /v1/responses         | native                 | responses over chat | responses over chat over messages |
| /v1/messages          | messages over chat     | messages over chat | native                    |
| /v1/messages/count_tokens | local estimate     | local estimate    | native                     |
| /v1/embeddings        | native                 | native            | (none)                     |
"""
import json
from dataclasses import dataclass, replace
from typing import Any, Optional

from portal.catalog import UpstreamInfo

from ..protocols import CHAT, COUNT_TOKENS, MESSAGES, RESPONSES
from ..sse import Event as SseEvent
from . import chat_over_messages, messages_over_chat, responses_over_chat
from .common import DONE, Event, encode  # noqa: F401 (re-exported)

EVENT_STREAM = "text/event-stream; charset=utf-8"
ESTIMATE = "estimate"  # count_tokens answered here (proxy/translate/count.py), not by the upstream


@dataclass(frozen=True)
class Call:
    """What a translation needs to know of the call besides its body."""

    model: str          # the public model id, which answers name
    dialect: str        # the upstream's (how its usage and reasoning read)
    max_output: int     # output tokens the hold covers (proxy.rewrite), the upstream's limit
    wants_usage: bool = True  # OpenAI chat streams: did the client ask for the usage chunk?


def upstream_route(client_route: str, protocol: str, chat_only: bool = False) -> Optional[str]:
    """The route an upstream of `protocol` is called on for a call to `client_route`; ESTIMATE for a
    count the gateway makes itself; None when it cannot serve it (embeddings from Anthropic)."""
    if protocol == "echo":  # the demo model speaks every route
        return client_route
    if protocol == "anthropic":
        return {MESSAGES: MESSAGES, COUNT_TOKENS: COUNT_TOKENS, CHAT: MESSAGES, RESPONSES: MESSAGES}.get(client_route)
    if client_route == RESPONSES and chat_only:
        return CHAT
    return {MESSAGES: CHAT, COUNT_TOKENS: ESTIMATE}.get(client_route, client_route)


def serves(client_route: str, upstream: UpstreamInfo) -> bool:
    return upstream_route(client_route, upstream.protocol, upstream.chat_only) is not None


class MessagesOverChat:
    upstream_route = CHAT

    def __init__(self, call: Call):
        self.call = call

    def request(self, document: dict) -> dict:
        return messages_over_chat.request(document, dialect=self.call.dialect, max_output=self.call.max_output)

    def response(self, document: dict) -> dict:
        return messages_over_chat.response(document, model=self.call.model, dialect=self.call.dialect)

    def events(self):
        return messages_over_chat.Events(model=self.call.model, dialect=self.call.dialect)


class ChatOverMessages:
    upstream_route = MESSAGES

    def __init__(self, call: Call):
        self.call = call
        self.json_tool: Optional[str] = None  # set by request(): a JSON schema answer comes as this tool

    def request(self, document: dict) -> dict:
        out, self.json_tool = chat_over_messages.request(document, max_output=self.call.max_output)
        return out

    def response(self, document: dict) -> dict:
        return chat_over_messages.response(document, model=self.call.model, json_tool=self.json_tool)

    def events(self):
        return chat_over_messages.Events(model=self.call.model, wants_usage=self.call.wants_usage,
                                         json_tool=self.json_tool)


class ResponsesOverChat:
    upstream_route = CHAT

    def __init__(self, call: Call):
        self.call = call
        self.custom: set = set()
        self.document: dict = {}

    def request(self, document: dict) -> dict:
        self.document = document
        out, self.custom = responses_over_chat.request(document, dialect=self.call.dialect,
                                                       max_output=self.call.max_output)
        return out

    def response(self, document: dict) -> dict:
        return responses_over_chat.response(document, model=self.call.model, dialect=self.call.dialect,
                                            custom=self.custom, request_document=self.document)

    def events(self):
        return responses_over_chat.Events(model=self.call.model, dialect=self.call.dialect, custom=self.custom,
                                          request_document=self.document)


class Chained:
    """Two translations in a row: the client's route to chat completions, then chat to the upstream's."""

    def __init__(self, outer, inner):
        self.outer, self.inner = outer, inner
        self.upstream_route = inner.upstream_route

    def request(self, document: dict) -> dict:
        return self.inner.request(self.outer.request(document))

    def response(self, document: dict) -> dict:
        return self.outer.response(self.inner.response(document))

    def events(self):
        return _ChainedEvents(self.outer.events(), self.inner.events())


class _ChainedEvents:
    def __init__(self, outer, inner):
        self.outer, self.inner = outer, inner

    def feed(self, name: Optional[str], data: Any) -> list[Event]:
        return [event for middle in self.inner.feed(name, data) for event in self.outer.feed(*middle)]

    def finish(self) -> list[Event]:
        events = [event for middle in self.inner.finish() for event in self.outer.feed(*middle)]
        return events + self.outer.finish()


def translator(client_route: str, upstream: UpstreamInfo, call: Call):
    """The call's translator to this upstream, or None when the upstream speaks the client's route."""
    route = upstream_route(client_route, upstream.protocol, upstream.chat_only)
    if route == client_route or route in (None, ESTIMATE):
        return None
    if client_route == MESSAGES:
        return MessagesOverChat(call)
    if client_route == CHAT:
        return ChatOverMessages(call)
    # RESPONSES: to chat completions, and on to Anthropic's Messages when that is what the upstream speaks.
    # The middle chat stream always carries its usage, which the Responses events need.
    if route == CHAT:
        return ResponsesOverChat(call)
    # The chat in between is ours: its usage reports cache writes as OpenRouter does (cache_write_tokens),
    # which that dialect's reader takes back.
    middle = replace(call, dialect="openrouter", wants_usage=True)
    return Chained(ResponsesOverChat(middle), ChatOverMessages(middle))


def named_events(client_route: str) -> bool:
    """Whether the client's stream names its events (`event:` lines): Anthropic's and Responses' do."""
    return client_route != CHAT


class Reshaper:
    """One stream's translation, upstream events (parsed, as the meter read them) in, the client's bytes out."""

    def __init__(self, events, client_route: str):
        self.events, self.named = events, named_events(client_route)

    def feed(self, event: SseEvent, raw: bytes = b"") -> bytes:
        data = DONE if event.data.strip() == DONE else event.json()
        if data is None:  # a comment or keep-alive: nothing to carry
            return b""
        return encode(self.events.feed(event.name, data), named=self.named)

    def finish(self) -> bytes:
        return encode(self.events.finish(), named=self.named)


class PublicModel:
    """A native Anthropic stream as it is, but for the model id in `message_start`: the public id the
    client asked for, not the upstream's name for it. Claude Code keeps a thinking block in its history
    only when the answer names the model it called, and Anthropic refuses a tool round without it."""

    def __init__(self, model: str):
        self.model = model

    def feed(self, event: SseEvent, raw: bytes) -> bytes:
        if event.name != "message_start":
            return raw
        data = event.json()
        if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
            return raw
        data["message"]["model"] = self.model
        return encode([("message_start", data)], named=True)

    def finish(self) -> bytes:
        return b""


def with_public_model(raw: bytes, model: str) -> bytes:
    """A complete native Anthropic message with the public model id (see PublicModel); unreadable: as it is."""
    try:
        document = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(document, dict) or document.get("model") in (None, model):
        return raw
    document["model"] = model
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
