"""What a request could cost, read from its body: the inputs of its hold, and its input bound. Pure.

docs/billing.md ("Holds"): the input the body shows, or the model's context window when the
request brings input the body does not show; the output limit times the choices; each server
tool's use limit; every service tier the request could be served at; the long-context rates
when the held input crosses the threshold. ("Bounds"): the most input a body can account for.
"""
from dataclasses import dataclass
from typing import Any, Optional

from portal.pricing import Price, base_tier

from .errors import ApiError, _
from .protocols import CHAT, MESSAGES, RESPONSES
from .rewrite import shown

# Holds assume at most one token per two bytes of request body: byte-level tokenizers average
# three to four bytes per token on prose and code, and dense text (CJK, base64) stays above two.
HOLD_BYTES_PER_TOKEN = 2
# The input ceiling (see `input_ceiling`): no tokenizer in use makes more than one token of one
# byte of text, plus what providers add that is not in the body.
CEILING_OVERHEAD_TOKENS = 4_096      # tool-use system prompts, chat templates, per-message framing
CEILING_TOKENS_PER_MEDIA = 16_384    # an image or a short document given by URL or file id
CEILING_SERVER_CONTENT_TOKENS = 2_000_000  # stored conversations and server-side tools: the largest context

# Fields that make the provider add content it keeps: earlier turns, stored prompts, containers.
_STATE_FIELDS = ("previous_response_id", "conversation", "prompt", "container", "mcp_servers")
# Tools the provider runs itself, whose results come back as input, and the fee unit each is
# billed in (None: no fee of its own; its tokens are what it costs).
_SERVER_TOOLS = (("web_search", "web_search"), ("web_fetch", "web_fetch"), ("file_search", "file_search"),
                 ("code_interpreter", "code_container"), ("code_execution", "code_container"),
                 ("mcp", None), ("image_generation", None), ("tool_search", None))
# Content parts that may point at media instead of carrying it: by URL or by file id.
_MEDIA_TYPES = {"image", "image_url", "input_image", "document", "file", "input_file", "input_audio", "audio",
                "container_upload"}
_URL_KEYS = ("url", "image_url", "file_url")


@dataclass(frozen=True)
class Plan:
    """The hold's inputs: token counts, fee-unit limits, and the tiers the call could be served at."""

    input_tokens: int
    output_tokens: int
    units: dict                      # fee unit -> the most uses the request allows
    tiers: tuple                     # service tiers it could be billed at (None: the base prices)
    by_reference: Optional[str]      # what brings input the body does not show, when something does
    input_bound: int = 0             # the most input the request can account for (docs/billing.md, "Bounds")


def _media_reference(part: dict) -> Optional[str]:
    """What a media part points at instead of carrying (inline base64 and data: URLs are carried)."""
    if part.get("type") not in _MEDIA_TYPES:  # called only for parts whose type is a string
        return None
    for node in (part, part.get("source"), part.get("image_url"), part.get("file")):
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("file_id"), str):
            return "a file id"
        for key in _URL_KEYS:
            url = node.get(key)
            if isinstance(url, str) and not url.startswith("data:"):
                return "a media URL"
    return None


def _scan(document: dict) -> tuple[int, Optional[str]]:
    """One walk over the body: how many media parts it has, and the first input it names by
    reference outside its tool definitions (None when all of it is in the body)."""
    parts, reference = 0, None
    stack = [(document, False)]
    while stack:
        node, in_tools = stack.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            kind = kind if isinstance(kind, str) else None  # a list or object there is not ours to refuse
            parts += kind in _MEDIA_TYPES
            if reference is None and not in_tools:
                reference = "an item_reference" if kind == "item_reference" else \
                    _media_reference(node) if kind else None
            stack.extend((value, in_tools or (node is document and key == "tools"))
                         for key, value in node.items() if isinstance(value, (dict, list)))
        else:
            stack.extend((item, in_tools) for item in node if isinstance(item, (dict, list)))
    return parts, reference


def _server_tools(document: dict) -> list[tuple[int, dict, str]]:
    """(index, tool, prefix) for each tool in the request that the provider runs itself."""
    tools = document.get("tools")
    found = []
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        kind = tool.get("type") if isinstance(tool, dict) else None
        prefix = next((p for p, _ in _SERVER_TOOLS if isinstance(kind, str) and kind.startswith(p)), None)
        if prefix is not None:
            found.append((index, tool, prefix))
    return found


def _provider_content(route: str, document: dict) -> Optional[str]:
    """What makes the provider add input of its own: stored state, server tools, searches."""
    if route not in (CHAT, RESPONSES, MESSAGES):
        return None
    state = next((name for name in _STATE_FIELDS if document.get(name)), None)
    if state:
        return state
    tools = _server_tools(document)
    if tools:
        return f"the {tools[0][1]['type']} tool"
    if document.get("web_search_options") is not None:  # OpenAI's search models
        return "web_search_options"
    if _live_search(document) is not None:
        return "search_parameters"
    return None


def by_reference(route: str, document: dict) -> Optional[str]:
    """Why the request's input is not all in its body (None when it is)."""
    if route not in (CHAT, RESPONSES, MESSAGES):
        return None
    return _provider_content(route, document) or _scan(document)[1]


def _ceiling(provided: Optional[str], media_parts: int, body_bytes: int) -> int:
    if provided:
        return CEILING_SERVER_CONTENT_TOKENS + body_bytes
    return body_bytes + CEILING_OVERHEAD_TOKENS + CEILING_TOKENS_PER_MEDIA * media_parts


def input_ceiling(route: str, document: dict, body_bytes: int) -> int:
    """The most input tokens (all input classes together) a request body can account for.

    Reported input above this is not believed: it is charged at this ceiling and the call is
    marked clamped (docs/billing.md, "Bounds").
    """
    return _ceiling(_provider_content(route, document), _scan(document)[0], body_bytes)


def hold_input_tokens(body_bytes: int) -> int:
    return -(-body_bytes // HOLD_BYTES_PER_TOKEN)


def _limit(document: dict, where: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ApiError(400, _("%(field)s must be a positive whole number, got %(value)s.", field=where,
                              value=shown(value)))
    return value


def tool_limits(route: str, document: dict, ceiling: int) -> dict[str, int]:
    """The most uses of each fee unit the request allows: Anthropic tools' `max_uses`, OpenAI
    Responses' `max_tool_calls` (each unit could take them all), and `ceiling` where it sets none."""
    if route not in (CHAT, RESPONSES, MESSAGES):
        return {}
    request_limit = None
    if route == RESPONSES and document.get("max_tool_calls") is not None:
        request_limit = _limit(document, "max_tool_calls", document["max_tool_calls"])
    limits: dict[str, int] = {}
    for index, tool, prefix in _server_tools(document):
        unit = dict(_SERVER_TOOLS)[prefix]
        if unit is None:
            continue
        limit = request_limit or ceiling
        if route == MESSAGES and tool.get("max_uses") is not None:
            limit = _limit(document, f"tools[{index}].max_uses", tool["max_uses"])
        limits[unit] = limits.get(unit, 0) + limit
    if route == CHAT and document.get("web_search_options") is not None:
        limits["web_search"] = limits.get("web_search", 0) + ceiling
    live = _live_search(document) if route == CHAT else None
    if live is not None:
        most = live.get("max_search_results")
        limits["search_sources"] = ceiling if most is None else \
            _limit(document, "search_parameters.max_search_results", most)
    return limits


def _live_search(document: dict) -> Optional[dict]:
    """xAI's Live Search settings, when the request turns it on (its sources are billed per use)."""
    options = document.get("search_parameters")
    if options is None:
        return None
    if not isinstance(options, dict):
        raise ApiError(400, _("%(field)s must be an object, got %(value)s.", field="search_parameters",
                              value=shown(options)))
    return None if options.get("mode") == "off" else options


def hold_tiers(requested: Optional[str], price: Price) -> tuple:
    """The tiers a call could be billed at: the one it pins, the base one when it pins the standard
    tier, otherwise (omitted or "auto") the base and every tier the model has prices for."""
    if requested is None or requested == "auto":
        return (None, *sorted(price.service_tiers))
    return (base_tier(requested),)


def plan(route: str, document: dict, body_bytes: int, *, output_tokens: int, service_tier: Optional[str],
         price: Price, context_window: int, tool_calls_ceiling: int) -> Plan:
    """The hold's inputs and the input bound, from one look at the request (the body is walked once)."""
    provided = _provider_content(route, document)
    media_parts, referenced = _scan(document)
    reference = provided or (referenced if route in (CHAT, RESPONSES, MESSAGES) else None)
    input_tokens = hold_input_tokens(body_bytes)
    if reference:
        input_tokens = max(input_tokens, context_window)
    return Plan(input_tokens, output_tokens, tool_limits(route, document, tool_calls_ceiling),
                hold_tiers(service_tier, price), reference,
                input_bound=max(_ceiling(provided, media_parts, body_bytes), input_tokens))
