"""Read a request body strictly, check every field billing depends on, and change only what billing needs. Pure.

The body we check is the body the upstream gets: a field that our parser and the upstream's
could read differently (a duplicate key, a NaN, a lone surrogate, invalid UTF-8) is refused,
so no request can be priced as one thing and run as another.
"""
import json
from dataclasses import dataclass
from typing import Any, Collection, Optional

from portal.pricing import base_tier

from .errors import ANTHROPIC, ApiError, _
from .protocols import CHAT, MESSAGES, RESPONSES, Route

MAX_DEPTH = 128  # far beyond any real request (Claude Code's tool schemas nest about 10 deep)


@dataclass(frozen=True)
class Rewritten:
    body: bytes              # what to send upstream
    document: dict           # the same, parsed
    stream: bool             # the client asked for an event stream
    max_output: int          # output tokens per choice that the upstream is held to
    choices: int             # how many completions the request asks for (each up to max_output)
    client_wants_usage: bool  # OpenAI chat streams: did the client ask for the usage chunk itself?
    service_tier: Optional[str] = None  # the tier asked of the upstream (None: left out)

    @property
    def output_ceiling(self) -> int:
        return self.max_output * self.choices


def _duplicates_refused(pairs: list) -> dict:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen = set()
        name = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ApiError(400, _("The request body has the key '%(name)s' twice in one object; send it once.",
                              name=name))
    return document


def _constant_refused(name: str):
    raise ApiError(400, _("The request body contains %(name)s, which is not valid JSON.", name=name))


def _check_tree(document: Any) -> None:
    """Refuse nesting beyond MAX_DEPTH and strings that are not valid Unicode (lone surrogates)."""
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, _("The request body nests deeper than %(depth)s levels.", depth=MAX_DEPTH))
        if isinstance(node, dict):
            items = list(node.keys()) + list(node.values())
        elif isinstance(node, list):
            items = node
        else:
            items = (node,)
            depth -= 1
        for item in items:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ApiError(400, _("The request body contains a lone surrogate escape (\\ud800-\\udfff "
                                          "without its pair); send valid Unicode text.")) from None
            elif isinstance(item, (dict, list)):
                stack.append((item, depth + 1))


def parse_body(raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, _("The request body is not valid UTF-8; send JSON encoded as UTF-8.")) from None
    try:
        document = json.loads(text, object_pairs_hook=_duplicates_refused, parse_constant=_constant_refused)
    except ValueError:
        raise ApiError(400, _("The request body is not valid JSON.")) from None
    except RecursionError:
        raise ApiError(400, _("The request body nests deeper than %(depth)s levels.", depth=MAX_DEPTH)) from None
    if not isinstance(document, dict):
        raise ApiError(400, _("The request body must be a JSON object."))
    _check_tree(document)
    return document


def shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _optional_bool(document: dict, field: str) -> bool:
    value = document.get(field)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, _("%(field)s must be true or false, got %(value)s.", field=field, value=shown(value)))
    return value


def _positive_int(document: dict, field: str, maximum: int = 0) -> int | None:
    value = document.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or (maximum and value > maximum):
        if maximum:
            raise ApiError(400, _("%(field)s must be a positive whole number from 1 to %(maximum)s, got %(value)s.",
                                  field=field, maximum=maximum, value=shown(value)))
        raise ApiError(400, _("%(field)s must be a positive whole number, got %(value)s.", field=field,
                              value=shown(value)))
    return value


_TIERED = (CHAT, RESPONSES, MESSAGES)  # routes whose requests may name a service tier


def _service_tier(route: Route, document: dict, priced: Collection[str], unpriced: str) -> Optional[str]:
    """The requested tier, checked: one with no prices for this model is refused, or left out of
    the request (removed from `document`) when the operator chose "strip" for the model."""
    tier = document.get("service_tier")
    if tier is None or route.name not in _TIERED:
        return None
    if not isinstance(tier, str):
        raise ApiError(400, _("%(field)s must be a string, got %(value)s.", field="service_tier", value=shown(tier)))
    if base_tier(tier) is None or tier in priced:
        return tier
    if unpriced == "strip":
        del document["service_tier"]
        return None
    standard = '"auto" or "standard_only"' if route.error_shape == ANTHROPIC else '"auto" or "default"'
    values = {"tier": shown(tier), "model": document.get("model"), "standard": standard}
    if priced:
        raise ApiError(400, _("service_tier %(tier)s is not offered for the model '%(model)s': it has prices for "
                              "the service tiers %(tiers)s, besides %(standard)s. Send one of those, or leave "
                              "service_tier out.", tiers=", ".join(sorted(priced)), **values))
    raise ApiError(400, _("service_tier %(tier)s is not offered for the model '%(model)s': it has prices only for "
                          "the standard tier (%(standard)s). Send one of those, or leave service_tier out.", **values))


def rewrite(route: Route, raw: bytes, document: dict, *, upstream_model: str, model_max_output: int,
            priced_tiers: Collection[str] = (), unpriced_tier: str = "refuse") -> Rewritten:
    """Point the body at the upstream's model name, cap its output at what the hold covers, and
    keep its service tier to those the model has prices for.

    The original bytes go upstream untouched when nothing needs to change.
    """
    document = dict(document)
    asked_tier = document.get("service_tier")
    service_tier = _service_tier(route, document, priced_tiers, unpriced_tier)
    changed = document.get("model") != upstream_model or document.get("service_tier") != asked_tier
    document["model"] = upstream_model
    stream = _optional_bool(document, "stream")
    if stream and not route.streams:
        path = "/v1" + route.path
        raise ApiError(400, _("stream is not supported on %(path)s; leave it out.", path=path))
    choices = 1
    if route.choices_field:
        choices = _positive_int(document, route.choices_field, route.max_choices) or 1
    max_output = 0
    fields = route.output_limit_fields
    if fields:
        requested = [(f, v) for f in fields if (v := _positive_int(document, f)) is not None]
        if requested:
            max_output = min(model_max_output, *(v for _, v in requested))
            for field, value in requested:
                if value > model_max_output:
                    document[field] = model_max_output
                    changed = True
        elif route.output_limit_required:
            raise ApiError(400, _("%(field)s: Field required.", field=fields[0]))
        else:
            # Without a limit the upstream could produce more than the hold covers.
            document[fields[0]] = max_output = model_max_output
            changed = True
    options = document.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, _("%(field)s must be an object, got %(value)s.", field="stream_options",
                              value=shown(options)))
    client_wants_usage = True
    if options is not None:
        _optional_bool(options, "include_usage")
    if route.stream_usage_opt_in and stream:  # the upstream reports a stream's usage only when asked
        client_wants_usage = bool(options and options.get("include_usage") is True)
        if not client_wants_usage:
            document["stream_options"] = {**(options or {}), "include_usage": True}
            changed = True
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() if changed else raw
    return Rewritten(body, document, stream, max_output, choices, client_wants_usage, service_tier)
