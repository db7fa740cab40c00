"""What every translation shares: refusals, usage in each API's shape, ids, and event encoding. Pure.

Usage goes back to a client in its own API's shape, built from the token classes the meter reads
from the upstream's report (proxy.dialects), so what a client is told it used is what it is charged.
"""
import json
import time
import uuid
from typing import Any, Optional

from portal.pricing import Usage

from ..dialects import UsageRejected, read
from ..errors import ApiError, _, _l

DONE = "[DONE]"  # OpenAI chat's last stream event, as an event's data
Event = tuple[Optional[str], Any]  # (event name or None, data: a JSON object, or DONE)


def refuse(message: str) -> ApiError:
    """A request that cannot be carried to this model's upstream: a 400 that says what to change."""
    return ApiError(400, message, code="unsupported_by_upstream")


# What a JSON value is, as a refusal says it: lazy strings, read in the language of the request refused.
_KINDS = {dict: _l("an object"), list: _l("a list"), str: _l("a string"), bool: _l("true or false"),
          type(None): _l("null")}
_NUMBER = _l("a number")


def kind_of(value: Any) -> str:
    return str(_KINDS.get(type(value), _NUMBER))


def need(condition: bool, field: str, wanted: str, value: Any) -> None:
    """Refuse a field that is not what the translation needs. `wanted` is a lazy string (`_l`): every
    request passes many of these checks, and only a refusal reads its words in the reader's language."""
    if not condition:
        raise ApiError(400, _("%(field)s must be %(wanted)s, got %(got)s.", field=field, wanted=wanted,
                              got=kind_of(value)))


def classes(route: str, usage: Any, dialect: str, document: Optional[dict] = None) -> Optional[Usage]:
    """The token classes in an upstream's usage object; None when it has none the meter can read
    (the meter charges such a call by its own rules; the client is then told zeros)."""
    if not isinstance(usage, dict):
        return None
    try:
        return read(route, usage, dialect, document)
    except UsageRejected:
        return None


def _input_total(u: Usage) -> int:
    return u.input + u.input_audio + u.cache_read + _writes(u)


def _output_total(u: Usage) -> int:
    return u.output + u.reasoning + u.output_audio


def _writes(u: Usage) -> int:
    return u.cache_write_5m + u.cache_write_1h


def anthropic_usage(u: Optional[Usage]) -> dict:
    u = u or Usage()
    shaped = {"input_tokens": u.input + u.input_audio, "cache_creation_input_tokens": _writes(u),
              "cache_read_input_tokens": u.cache_read, "output_tokens": _output_total(u)}
    if u.cache_write_1h:
        shaped["cache_creation"] = {"ephemeral_5m_input_tokens": u.cache_write_5m,
                                    "ephemeral_1h_input_tokens": u.cache_write_1h}
    return shaped


def chat_usage(u: Optional[Usage]) -> dict:
    u = u or Usage()
    prompt, completion = _input_total(u), _output_total(u)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": _writes(u),
                                      "audio_tokens": u.input_audio},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning, "audio_tokens": u.output_audio}}


def responses_usage(u: Optional[Usage]) -> dict:
    u = u or Usage()
    given, made = _input_total(u), _output_total(u)
    return {"input_tokens": given,
            "input_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": _writes(u)},
            "output_tokens": made, "output_tokens_details": {"reasoning_tokens": u.reasoning},
            "total_tokens": given + made}


def items(value: Any) -> list:
    """An upstream's list, or none: a malformed answer is carried as far as it reads, never a crash."""
    return value if isinstance(value, list) else []


def word(value: Any) -> Optional[str]:
    """An upstream's string (a finish reason, a tool's name or id), or None for anything else."""
    return value if isinstance(value, str) else None


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def reasoning_of(message: dict) -> Optional[str]:
    """The reasoning a chat message or delta carries: `reasoning_content` (DeepSeek, Qwen, Kimi, Grok)
    or `reasoning` (OpenRouter)."""
    for name in ("reasoning_content", "reasoning"):
        if isinstance(message.get(name), str) and message[name]:
            return message[name]
    return None


def said(message: dict) -> str:
    """A chat message's or delta's text, a refusal included (it reads as text in the other APIs)."""
    return "".join(part for part in (message.get("content"), message.get("refusal")) if isinstance(part, str))


def text_of(content: Any, field: str) -> str:
    """Plain text from a string or a list of text parts (any API's: text, input_text, output_text)."""
    if isinstance(content, str):
        return content
    need(isinstance(content, list), field, _l("a string or a list of text parts"), content)
    texts = []
    for part in content:
        need(isinstance(part, dict) and isinstance(part.get("text"), str), f"{field}[]",
             _l("a text part (an object with a string `text`)"), part)
        texts.append(part["text"])
    return "\n".join(texts)


def arguments_object(arguments: Any, where: str, *, lenient: bool = False) -> dict:
    """A tool call's JSON arguments as the object Anthropic's tool_use.input is; {} for none.

    A client's own history with arguments that are not an object is refused; an upstream's answer
    (`lenient`) keeps what it can: such arguments under "arguments", as text."""
    if arguments in (None, ""):
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        if lenient:
            return {"arguments": str(arguments)}
        raise refuse(_("%(where)s are not a JSON object, which a tool call's input must be: %(value)s",
                       where=where, value=str(arguments)[:80]))
    return value


def encode(events: list[Event], *, named: bool) -> bytes:
    """Events as server-sent events: with `event:` lines (Anthropic, Responses) or data only (OpenAI chat)."""
    out = []
    for name, data in events:
        payload = data if data == DONE else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        out.append(f"event: {name}\ndata: {payload}\n\n" if named and name else f"data: {payload}\n\n")
    return "".join(out).encode()
