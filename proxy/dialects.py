"""Usage objects read per provider dialect: which wire field holds which token class. Pure.

Every OpenAI-compatible provider fills the same `usage` object a little differently: where cached
tokens are, whether cache writes are reported, whether reasoning is inside `completion_tokens`.
The classes read here are disjoint (portal.pricing.Usage); see docs/billing.md ("Dialects").
"""
from dataclasses import replace
from typing import Any, Optional

from portal.pricing import Usage

from .protocols import CHAT, EMBEDDINGS, MESSAGES, RESPONSES

ANTHROPIC = "anthropic"
XAI = "xai"
DIALECTS = ("openai", ANTHROPIC, "deepseek", "dashscope", "moonshot", XAI, "openrouter", "generic-openai")
# The built-in demo upstream answers like OpenAI.
KNOWN = DIALECTS + ("echo",)

# No real call reports more than this in one token class; a larger figure is a bug or an attack.
MAX_TOKENS_PER_CLASS = 50_000_000

# Output items of the Responses API that the provider bills per use, and the fee unit each is.
_ITEM_UNITS = {"web_search_call": "web_search", "file_search_call": "file_search", "web_fetch_call": "web_fetch"}
# Anthropic's usage.server_tool_use counters, and the fee unit each is.
_SERVER_TOOL_UNITS = {"web_search_requests": "web_search", "web_fetch_requests": "web_fetch",
                      "code_execution_requests": "code_container"}


class UsageRejected(ValueError):
    """The upstream reported usage that cannot be right (negative, non-integer, absurd)."""


def check_dialect(dialect: str) -> str:
    if dialect not in KNOWN:
        raise ValueError(f"unknown upstream dialect {dialect!r} (expected one of {', '.join(DIALECTS)})")
    return dialect


def count(obj: Any, *path: str) -> int:
    """The integer at `path`, 0 when absent or null; UsageRejected when it is not a plausible count."""
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    if obj is None:
        return 0
    if not isinstance(obj, int) or isinstance(obj, bool) or not 0 <= obj <= MAX_TOKENS_PER_CLASS:
        raise UsageRejected(f"{'.'.join(path)} = {obj!r}")
    return obj


def read(route: str, usage: dict, dialect: str = "openai", document: Optional[dict] = None) -> Usage:
    """The classes in one `usage` object; `document` is the response (or chunk) around it, for the
    service tier and the output items."""
    document = document if isinstance(document, dict) else {}
    if route == MESSAGES:  # Anthropic's format, whoever serves it
        return _messages(usage)
    if route == EMBEDDINGS:
        return Usage(input=count(usage, "prompt_tokens"))
    if route == CHAT:
        found = _chat(usage, dialect)
    elif route == RESPONSES:
        found = _responses(usage, document.get("output"))
    else:
        raise ValueError(f"no usage for route {route!r}")
    tier = document.get("service_tier")
    found = replace(found, service_tier=tier if isinstance(tier, str) else None)
    return found if dialect == ANTHROPIC else _total_guard(found, usage)


def _remainder(whole: int, whole_name: str, **parts: int) -> int:
    """What is left of `whole` once the parts reported inside it are taken out."""
    rest = whole - sum(parts.values())
    if rest < 0:
        named = " + ".join(f"{name} {value}" for name, value in parts.items() if value)
        raise UsageRejected(f"{named} > {whole_name} {whole}")
    return rest


def _split_writes(total: Optional[int], breakdown: Any, where: str) -> tuple[int, int]:
    """(5-minute, 1-hour) cache writes: the 1-hour figure from the breakdown, the rest of the total 5-minute."""
    if not isinstance(breakdown, dict):
        return total or 0, 0
    five = count(breakdown, "ephemeral_5m_input_tokens")
    hour = count(breakdown, "ephemeral_1h_input_tokens")
    if total is None:
        return five, hour
    if five + hour > total:
        raise UsageRejected(f"{where}.cache_creation ({five} + {hour}) > cache_creation_input_tokens {total}")
    return total - hour, hour


def _chat(u: dict, dialect: str) -> Usage:
    prompt, completion = count(u, "prompt_tokens"), count(u, "completion_tokens")
    details = "prompt_tokens_details"
    cache_read = count(u, details, "cached_tokens")
    write_5m = write_1h = 0
    if dialect == "deepseek" and u.get("prompt_cache_hit_tokens") is not None:
        cache_read = count(u, "prompt_cache_hit_tokens")  # prompt_cache_miss_tokens is the input
    elif dialect == "moonshot" and u.get("cached_tokens") is not None:
        cache_read = count(u, "cached_tokens")
    elif dialect == "openrouter":
        write_5m = count(u, details, "cache_write_tokens")
    elif dialect == "dashscope":
        own = u.get(details) if isinstance(u.get(details), dict) else {}
        total = None if own.get("cache_creation_input_tokens") is None else \
            count(u, details, "cache_creation_input_tokens")
        write_5m, write_1h = _split_writes(total, own.get("cache_creation"), details)
    input_audio = count(u, details, "audio_tokens")
    plain = _remainder(prompt, "prompt_tokens", cached_tokens=cache_read, cache_writes=write_5m + write_1h,
                       audio_tokens=input_audio)
    output_audio = count(u, "completion_tokens_details", "audio_tokens")
    output, reasoning, notes = _completion(completion, count(u, "completion_tokens_details", "reasoning_tokens"),
                                           output_audio, always_outside=dialect == XAI)
    units = {"search_sources": count(u, "num_sources_used")} if dialect == XAI else {}
    return Usage(input=plain, cache_read=cache_read, cache_write_5m=write_5m, cache_write_1h=write_1h,
                 input_audio=input_audio, output=output, reasoning=reasoning,
                 output_audio=output_audio,
                 units=_nonzero(units), notes=notes)


def _completion(completion: int, reasoning: int, audio: int, *, always_outside: bool = False,
                name: str = "completion_tokens") -> tuple[int, int, tuple[str, ...]]:
    """(output, reasoning, notes): OpenAI counts reasoning and audio inside the completion; some
    providers report reasoning beside it (xAI always), which shows when the parts exceed the whole."""
    if not always_outside and reasoning + audio <= completion:
        return completion - reasoning - audio, reasoning, ()
    output = _remainder(completion, name, audio_tokens=audio)
    notes = () if always_outside or not reasoning else (
        f"reasoning_tokens {reasoning} read as outside {name} {completion}",)
    return output, reasoning, notes


def _responses(u: dict, output_items: Any) -> Usage:
    total_in = count(u, "input_tokens")
    cached = count(u, "input_tokens_details", "cached_tokens")
    output, reasoning, notes = _completion(count(u, "output_tokens"),
                                           count(u, "output_tokens_details", "reasoning_tokens"), 0,
                                           name="output_tokens")
    return Usage(input=_remainder(total_in, "input_tokens", cached_tokens=cached), cache_read=cached,
                 output=output, reasoning=reasoning, units=item_units(output_items), notes=notes)


def _total_guard(usage: Usage, u: dict) -> Usage:
    """What `total_tokens` reports beyond the classes read is output nobody itemised (Gemini's
    thoughts through OpenAI-compatible adapters): charged as reasoning, and the record says so."""
    gap = count(u, "total_tokens") - sum(usage.tokens().values())
    if gap <= 0:
        return usage
    return replace(usage, reasoning=usage.reasoning + gap,
                   notes=usage.notes + (f"total_tokens guard: +{gap} tokens charged as reasoning",))


def _messages(u: dict) -> Usage:
    total_writes = u.get("cache_creation_input_tokens")
    write_5m, write_1h = _split_writes(None if total_writes is None else count(u, "cache_creation_input_tokens"),
                                       u.get("cache_creation"), "usage")
    units = {unit: count(u, "server_tool_use", field) for field, unit in _SERVER_TOOL_UNITS.items()}
    tier = u.get("service_tier")
    return Usage(input=count(u, "input_tokens"), cache_read=count(u, "cache_read_input_tokens"),
                 cache_write_5m=write_5m, cache_write_1h=write_1h, output=count(u, "output_tokens"),
                 units=_nonzero(units), service_tier=tier if isinstance(tier, str) else None)


def item_units(items: Any) -> dict[str, int]:
    """Fee units from Responses output items: one per search or fetch, one per code container used."""
    if not isinstance(items, list):
        return {}
    units: dict[str, int] = {}
    containers = set()
    for item in items:
        kind = item.get("type") if isinstance(item, dict) else None
        kind = kind if isinstance(kind, str) else None  # an odd upstream: not a tool item
        if kind in _ITEM_UNITS:
            units[_ITEM_UNITS[kind]] = units.get(_ITEM_UNITS[kind], 0) + 1
        elif kind == "code_interpreter_call":
            containers.add(item.get("container_id") if isinstance(item.get("container_id"), str) else None)
    if containers:
        units["code_container"] = len(containers)
    return units


def _nonzero(units: dict[str, int]) -> dict[str, int]:
    return {name: n for name, n in units.items() if n}
