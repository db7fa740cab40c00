"""The route table: what each billed /v1 route is, in one place.

A route's path under /v1 is also the upstream's path, so the table serves both directions.
Metering reads usage by the route's name (`proxy.metering`), in the route's wire protocol.
"""
from dataclasses import dataclass
from typing import Optional

from portal.models import Protocol

from .errors import ANTHROPIC, OPENAI

CHAT, RESPONSES, EMBEDDINGS, MESSAGES, COUNT_TOKENS = "chat", "responses", "embeddings", "messages", "count_tokens"


@dataclass(frozen=True)
class Route:
    name: str
    path: str                          # under /v1, ours and the upstream's
    protocol: Protocol                 # the wire protocol its upstream must speak
    error_shape: str                   # OPENAI or ANTHROPIC error bodies
    output_limit_fields: tuple = ()    # in the order a client's value is looked for
    output_limit_required: bool = False
    choices_field: Optional[str] = None  # a field that multiplies output (OpenAI chat's `n`)
    max_choices: int = 1
    streams: bool = False              # may the client ask for an event stream?
    stream_usage_opt_in: bool = False  # streams carry usage only if asked (stream_options.include_usage)
    billed: bool = True                # count_tokens is free
    output_field: str = ""             # where a complete response carries its output (for estimates)

    @property
    def limit_hint(self) -> str:
        """The field a client can lower to make a call cheaper to hold."""
        return self.output_limit_fields[-1] if self.output_limit_fields else ""


ROUTES = {route.name: route for route in (
    Route(CHAT, "/chat/completions", Protocol.OPENAI, OPENAI, ("max_completion_tokens", "max_tokens"),
          choices_field="n", max_choices=128, streams=True, stream_usage_opt_in=True, output_field="choices"),
    Route(RESPONSES, "/responses", Protocol.OPENAI, OPENAI, ("max_output_tokens",), streams=True,
          output_field="output"),
    Route(EMBEDDINGS, "/embeddings", Protocol.OPENAI, OPENAI, output_field="data"),
    Route(MESSAGES, "/messages", Protocol.ANTHROPIC, ANTHROPIC, ("max_tokens",), output_limit_required=True,
          streams=True, output_field="content"),
    Route(COUNT_TOKENS, "/messages/count_tokens", Protocol.ANTHROPIC, ANTHROPIC, billed=False),
)}


def error_shape(path: str) -> str:
    """The error shape a client of `path` (a full request path) expects."""
    return ANTHROPIC if path.startswith("/v1/messages") else OPENAI
