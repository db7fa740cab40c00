"""The public model list: what /models, /quickstart and GET /v1/models say about each model.

One place derives, per public model, its limits, its prices in force, an example cost (the real
pricing rule, in integer micro-dollars) and the API routes that take it (from the proxy's route
table and the model's upstream protocol). `openrouter_pricing` writes a price the way OpenRouter's
models API does: decimal strings of USD per token, computed with Decimal from micro-dollars.
"""
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Optional

from . import catalog, routes
from .models import CatalogModel
from .pricing import TOKENS_PER_PRICE_UNIT, UNITS_PER_FEE, Price, Usage, quote

# The scales below assume these (docs/billing.md): prices per million tokens, fees per thousand uses.
assert (TOKENS_PER_PRICE_UNIT, UNITS_PER_FEE) == (1_000_000, 1_000)

# The example on the models page: a 2,000-token prompt with a 500-token answer.
EXAMPLE_INPUT = 2_000
EXAMPLE_OUTPUT = 500

# Our token classes by the names OpenRouter's `pricing` object gives them. OpenRouter has one cache
# write price; ours for five minutes is the one Anthropic calls plain "cache write". The one-hour
# write has no OpenRouter name: it keeps ours (input_cache_write_1h), as fees other than web search do.
OPENROUTER_CLASSES = {"input": "prompt", "output": "completion", "cache_read": "input_cache_read",
                      "cache_write_5m": "input_cache_write", "cache_write_1h": "input_cache_write_1h",
                      "input_audio": "audio", "output_audio": "audio_output", "reasoning": "internal_reasoning"}


@dataclass(frozen=True)
class Listing:
    """A public model as people and clients see it."""

    public_id: str
    protocol: str                 # the upstream's wire protocol: openai, anthropic or echo
    context_window: int           # tokens
    max_output_tokens: int        # tokens, at most, per answer
    price: Price                  # in force now
    price_since: datetime
    routes: tuple[str, ...]       # the /v1 paths that take this model
    example_cost: int             # micro-dollars for EXAMPLE_INPUT in, EXAMPLE_OUTPUT out

    def matches(self, query: str) -> bool:
        """Whether every word of `query` is in the model's id, protocol or one of its routes (any case)."""
        haystack = " ".join((self.public_id, self.protocol, *self.routes)).lower()
        return all(word in haystack for word in query.lower().split())


def routes_for(*protocols: str) -> tuple[str, ...]:
    """The /v1 paths a model served over any of `protocols` answers, natively or translated (proxy/translate/)."""
    from proxy.protocols import ROUTES  # the route table is the proxy's; import late (it imports the app)
    from proxy.translate import upstream_route

    return tuple(f"/v1{route.path}" for route in ROUTES.values()
                 if any(upstream_route(route.name, protocol) is not None for protocol in protocols))


def example_cost(price: Price) -> int:
    """What EXAMPLE_INPUT input tokens with EXAMPLE_OUTPUT output tokens cost, in micro-dollars."""
    return quote(price, Usage(input=EXAMPLE_INPUT, output=EXAMPLE_OUTPUT))


def _protocols(model: CatalogModel) -> set[str]:
    """The protocols of the model's enabled routes (a model whose routes mix them answers the union)."""
    found = {route.upstream.protocol for route in routes.routes_of(model) if route.upstream.enabled}
    return found or {model.upstream.protocol}


def listing(model: CatalogModel) -> Optional[Listing]:
    """The model as listed, or None while it has no price in force."""
    row = catalog.current_price(model.id)
    if row is None:
        return None
    price = catalog.as_price(row)
    return Listing(public_id=model.public_id, protocol=model.upstream.protocol,
                   context_window=model.context_window or catalog.DEFAULT_CONTEXT_WINDOW,
                   max_output_tokens=model.max_output_tokens, price=price, price_since=row.effective_at,
                   routes=routes_for(*_protocols(model)), example_cost=example_cost(price))


def public_models() -> list[Listing]:
    """Every model a key can call now (enabled, priced, its upstream on), by id."""
    found = [listing(model) for model in catalog.enabled_models() if model.upstream.enabled]
    return [item for item in found if item is not None]


def usd_per_token(micro_per_million: int) -> str:
    """Micro-dollars per million tokens as a decimal string of USD per token, exact: 1_000_000 -> "0.000001"."""
    return _plain(Decimal(int(micro_per_million)).scaleb(-12))  # micro (1e-6) per million (1e6)


def usd_per_unit(micro_per_thousand: int) -> str:
    """Micro-dollars per thousand units (a fee) as a decimal string of USD per unit, exact."""
    return _plain(Decimal(int(micro_per_thousand)).scaleb(-6 - 3))  # micro (1e-6) per thousand (1e3)


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def openrouter_pricing(price: Price) -> dict[str, str]:
    """The base prices as OpenRouter lists them: USD per token ("prompt", "completion", and each class
    the operator priced apart), "request" (no charge per request here), and per-use fees."""
    fields = {OPENROUTER_CLASSES[name]: usd_per_token(rate) for name, rate in price.base_rates().items()
              if rate is not None}
    fields["request"] = "0"
    fields.update({unit: usd_per_unit(rate) for unit, rate in sorted(price.fees.items())})
    return fields

