"""What billing needs changed in a request body, and nothing else. Pure."""
import json
from dataclasses import dataclass
from typing import Optional

from .errors import ApiError
from .metering import CHAT, COUNT_TOKENS, EMBEDDINGS, MESSAGES, RESPONSES

# Output limit fields per route, in the order a client's value is looked for.
MAX_OUTPUT_FIELDS = {CHAT: ("max_completion_tokens", "max_tokens"), RESPONSES: ("max_output_tokens",),
                     MESSAGES: ("max_tokens",), EMBEDDINGS: (), COUNT_TOKENS: ()}


@dataclass(frozen=True)
class Rewritten:
    body: bytes              # what to send upstream
    document: dict           # the same, parsed
    max_output: int          # the output tokens the hold covers
    client_wants_usage: bool  # OpenAI chat streams: did the client ask for the usage chunk itself?


def parse_body(raw: bytes) -> dict:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return document


def _positive_int(document: dict, field: str) -> Optional[int]:
    value = document.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ApiError(400, f"{field} must be a positive integer, got {json.dumps(value)}.")
    return value


def rewrite(route: str, raw: bytes, document: dict, *, upstream_model: str, model_max_output: int,
            stream: bool) -> Rewritten:
    """Point the body at the upstream's model name and cap its output at what the hold covers.

    The original bytes go upstream untouched when nothing needs to change.
    """
    changed = document.get("model") != upstream_model
    document = dict(document, model=upstream_model)
    max_output = 0
    fields = MAX_OUTPUT_FIELDS[route]
    if fields:
        requested = [(f, v) for f in fields if (v := _positive_int(document, f)) is not None]
        if requested:
            max_output = min(v for _, v in requested)
            for field, value in requested:
                if value > model_max_output:
                    document[field] = model_max_output
                    changed = True
            max_output = min(max_output, model_max_output)
        elif route == MESSAGES:
            raise ApiError(400, "max_tokens: Field required.")
        else:
            # Without a limit the upstream could produce more than the hold covers.
            document[fields[0]] = max_output = model_max_output
            changed = True
    client_wants_usage = True
    if route == CHAT and stream:
        options = document.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise ApiError(400, "stream_options must be an object.")
        client_wants_usage = bool(options and options.get("include_usage") is True)
        if not client_wants_usage:
            document["stream_options"] = {**(options or {}), "include_usage": True}
            changed = True
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() if changed else raw
    return Rewritten(body, document, max_output, client_wants_usage)
