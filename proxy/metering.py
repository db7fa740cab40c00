"""Token usage from upstream responses and stream events, and the estimates used without it. Pure.

Which field holds which token class depends on the upstream's dialect (proxy.dialects); this
module follows responses and streams, and estimates what they leave out. See docs/billing.md.
"""
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from portal.pricing import Usage

from .dialects import DIALECTS, MAX_TOKENS_PER_CLASS, UsageRejected, check_dialect, item_units, read  # noqa: F401
from .protocols import CHAT, COUNT_TOKENS, EMBEDDINGS, MESSAGES, RESPONSES  # noqa: F401  (re-exported)
from .sse import Event

# When usage is missing, input is charged at the typical four bytes per token, and output at
# one token per four characters relayed, but never fewer than one per delta event.
ESTIMATE_BYTES_PER_TOKEN = 4
ESTIMATE_CHARS_PER_TOKEN = 4


def usage_from_body(route: str, body: Any, dialect: str = "openai") -> Optional[Usage]:
    """Usage reported in a complete (non-streamed) response, or None when it is missing."""
    check_dialect(dialect)
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    return read(route, usage, dialect, body)


def units_from_body(route: str, body: Any) -> dict[str, int]:
    """Fee units a complete response shows without a usage object (Responses output items)."""
    return item_units(body.get("output")) if route == RESPONSES and isinstance(body, dict) else {}


_OUTPUT_TEXT_KEYS = ("content", "text", "arguments", "refusal", "thinking", "partial_json")


def _output_chars(node: Any, key: str = "") -> int:
    if isinstance(node, str):
        return len(node) if key in _OUTPUT_TEXT_KEYS else 0
    if isinstance(node, list):
        return sum(_output_chars(item, key) for item in node)
    if isinstance(node, dict):
        return sum(_output_chars(v, k) for k, v in node.items() if k != "usage")
    return 0


def estimated_output_tokens(document: Any) -> int:
    """Output of a complete response without usage: its generated text at four characters a token."""
    return -(-_output_chars(document) // ESTIMATE_CHARS_PER_TOKEN)


def estimated_input_tokens(body_bytes: int) -> int:
    return -(-body_bytes // ESTIMATE_BYTES_PER_TOKEN)


@dataclass
class StreamMeter:
    """Follows a stream event by event: what usage was reported, and how much output was relayed."""

    route: str
    dialect: str = "openai"
    usage: Optional[Usage] = None        # final usage, when the stream reported it
    input_seen: Optional[Usage] = None   # Anthropic's message_start: input classes known up front
    delta_events: int = 0
    delta_chars: int = 0
    finished: bool = False
    usage_rejected: bool = False         # the stream reported usage that cannot be right
    service_tier: Optional[str] = None   # the tier the chunks or events say served the call
    _start_usage: dict = field(default_factory=dict)  # message_start's raw usage, for message_delta
    _items: list = field(default_factory=list)        # Responses output items seen done
    _final_items: Optional[list] = None               # the output of the Responses final event

    def __post_init__(self):
        check_dialect(self.dialect)

    def feed(self, event: Event) -> bool:
        """Account for one event; True when it is OpenAI's choice-less usage chunk."""
        data = event.json()
        if not isinstance(data, dict):
            if event.data.strip() == "[DONE]":
                self.finished = True
            return False
        if self.route == CHAT:
            return self._chat(data)
        if self.route == RESPONSES:
            self._responses(event.name or data.get("type"), data)
        elif self.route == MESSAGES:
            self._messages(event.name or data.get("type"), data)
        return False

    def _chat(self, data: dict) -> bool:
        if isinstance(data.get("service_tier"), str):
            self.service_tier = data["service_tier"]
        reported = None
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta.get("content"), delta.get("reasoning_content"), delta.get("refusal"),
                            _tool_text(delta.get("tool_calls")))
            if isinstance(choice.get("usage"), dict):  # Moonshot puts it in the last chunk's choice
                reported = choice["usage"]
        if isinstance(data.get("usage"), dict):
            reported = data["usage"]
        if reported is None:
            return False
        self.usage = read(CHAT, reported, self.dialect, {"service_tier": self.service_tier})
        return not data.get("choices")

    def _responses(self, kind: Optional[str], data: dict) -> None:
        response = data.get("response")
        if isinstance(response, dict) and isinstance(response.get("service_tier"), str):
            self.service_tier = response["service_tier"]
        if kind and kind.endswith(".delta"):
            self._delta(data.get("delta") if isinstance(data.get("delta"), str) else None)
        elif kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            self._items.append(data["item"])
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.finished = True
            if not isinstance(response, dict):
                return
            if isinstance(response.get("output"), list):
                self._final_items = response["output"]
            if isinstance(response.get("usage"), dict):
                self.usage = read(RESPONSES, response["usage"], self.dialect,
                                  {**response, "output": self._output_items()})

    def _output_items(self) -> list:
        return self._items if self._final_items is None else self._final_items

    def _messages(self, kind: Optional[str], data: dict) -> None:
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage")
            if isinstance(usage, dict):
                self._start_usage = usage
                self.input_seen = read(MESSAGES, usage)
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            self._delta(delta.get("text"), delta.get("thinking"), delta.get("partial_json"))
        elif kind == "message_delta" and isinstance(data.get("usage"), dict):
            # message_delta's usage is cumulative and overrides the fields it has; message_start's
            # output_tokens is only a placeholder.
            start = {k: v for k, v in self._start_usage.items() if k != "output_tokens"}
            self.usage = read(MESSAGES, {**start, **data["usage"]})
        elif kind == "message_stop":
            self.finished = True

    def _delta(self, *texts) -> None:
        chars = sum(len(t) for t in texts if isinstance(t, str))
        if chars:
            self.delta_events += 1
            self.delta_chars += chars

    @property
    def relayed_output(self) -> bool:
        return self.delta_events > 0

    def estimated_output_tokens(self) -> int:
        return max(self.delta_events, -(-self.delta_chars // ESTIMATE_CHARS_PER_TOKEN))

    def charge(self, body_bytes: int) -> tuple[Usage, bool]:
        """What to charge for what happened: (usage, estimated)."""
        if self.usage is not None:
            if self.usage.service_tier is None and self.service_tier is not None:
                return replace(self.usage, service_tier=self.service_tier), False
            return self.usage, False
        known = self.input_seen
        if known is None:
            known = Usage(input=estimated_input_tokens(body_bytes), service_tier=self.service_tier,
                          units=item_units(self._output_items()) if self.route == RESPONSES else {})
        return replace(known, output=self.estimated_output_tokens(), reasoning=0, output_audio=0), True


def _tool_text(tool_calls: Any) -> Optional[str]:
    if not isinstance(tool_calls, list):
        return None
    parts = []
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.extend(v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str))
    return "".join(parts) or None
