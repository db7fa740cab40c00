"""The pricing rule: one pure function from a price and a call's usage to micro-dollars.

cost = round_half_up((sum over token classes of tokens x micro-USD per million
                      + sum over fee units of units x micro-USD per thousand x 1,000) / 1,000,000),
rounded once per call. See docs/billing.md ("Token classes", "Fees", "Tiers").

Rates are chosen in this order: the base prices; over them the long-context set when the call's
input side exceeds its threshold; over that the set of the service tier the upstream reports.
A class none of them prices falls back: cache classes to input, reasoning to output, any other
(audio) to the highest input-side price, and that last fallback is flagged for the operator.
"""
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from .errors import InvalidAmount
from .money import MICRO, div_round_half_up, parse_usd

TOKENS_PER_PRICE_UNIT = 1_000_000
UNITS_PER_FEE = 1_000  # fees are priced per thousand units (searches, containers)
TOKEN_CLASSES = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h",
                 "input_audio", "output_audio", "reasoning")
INPUT_SIDE = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "input_audio")
OUTPUT_SIDE = ("output", "reasoning", "output_audio")
# Old names price files may still use: cache writes had one price before they had durations.
CLASS_ALIASES = {"cache_write": "cache_write_5m"}
_FALLBACK = {"cache_read": "input", "cache_write_5m": "input", "cache_write_1h": "input", "reasoning": "output"}
# Fee units the meters report; a price file may name others (providers add tools).
FEE_UNITS = ("web_search", "web_fetch", "file_search", "code_container")
# What providers call their standard tier: billed at the base prices, whatever the model's tiers.
BASE_TIERS = frozenset({"default", "standard", "auto", "standard_only", "on_demand"})


def base_tier(tier: Optional[str]) -> Optional[str]:
    """A reported or requested tier as priced: None for the standard tier."""
    return None if tier is None or tier in BASE_TIERS else tier


@dataclass(frozen=True)
class Price:
    """Micro-dollars per million tokens per class, micro-dollars per thousand units per fee, and tiers.

    `long_context` and each of `service_tiers` name only the classes they change. Never mutate the
    mappings: prices are shared between threads.
    """

    input: int
    output: int
    cache_read: Optional[int] = None
    cache_write_5m: Optional[int] = None
    cache_write_1h: Optional[int] = None
    input_audio: Optional[int] = None
    output_audio: Optional[int] = None
    reasoning: Optional[int] = None
    fees: Mapping[str, int] = field(default_factory=dict)
    long_context_above: Optional[int] = None
    long_context: Mapping[str, int] = field(default_factory=dict)
    service_tiers: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def __post_init__(self):
        for name in TOKEN_CLASSES:
            value = getattr(self, name)
            if value is not None:
                _check_rate(value, name)
        for name, value in self.fees.items():
            _check_rate(value, f"fee {name}")
        for where, rates in (("long context", self.long_context), *self.service_tiers.items()):
            for name, value in rates.items():
                if name not in TOKEN_CLASSES:
                    raise ValueError(f"{where}: unknown token class {name!r}")
                _check_rate(value, f"{where} {name}")
        if self.long_context and self.long_context_above is None:
            raise ValueError("long-context prices need a threshold (above_input_tokens)")
        if self.long_context_above is not None and (not isinstance(self.long_context_above, int)
                                                    or self.long_context_above <= 0):
            raise ValueError(f"the long-context threshold must be a positive number of tokens, "
                             f"got {self.long_context_above!r}")

    def base_rates(self) -> dict[str, Optional[int]]:
        return {name: getattr(self, name) for name in TOKEN_CLASSES}

    def per_class(self, *, long_context: bool = False, tier: Optional[str] = None) -> dict[str, int]:
        """Effective price of every class, with the overrides and fallbacks applied."""
        return resolve(self, long_context, tier)[0]


def _check_rate(value, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} price must be a non-negative integer of micro-dollars, got {value!r}")


def resolve(price: Price, long_context: bool, tier: Optional[str]) -> tuple[dict[str, int], list[str], bool]:
    """(effective rates, classes priced by the unpriced fallback, whether `tier` has prices)."""
    rates = price.base_rates()
    if long_context:
        rates.update(price.long_context)
    tier = base_tier(tier)
    tier_priced = tier is None or tier in price.service_tiers
    if tier is not None and tier_priced:
        rates.update(price.service_tiers[tier])
    for name, fallback in _FALLBACK.items():
        if rates[name] is None:
            rates[name] = rates[fallback]
    unpriced = [name for name in TOKEN_CLASSES if rates[name] is None]
    if unpriced:
        highest = max(rates[name] for name in INPUT_SIDE if rates[name] is not None)
        for name in unpriced:
            rates[name] = highest
    return rates, unpriced, tier_priced


@dataclass(frozen=True)
class Usage:
    """What one call used: tokens per class (disjoint), fee units, and the tier that served it."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    input_audio: int = 0
    output_audio: int = 0
    reasoning: int = 0
    units: Mapping[str, int] = field(default_factory=dict)
    service_tier: Optional[str] = None
    # How the meter read it, for the record: "total_tokens guard: +300 reasoning", ...
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        for name in TOKEN_CLASSES:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} tokens must be a non-negative integer, got {value!r}")
        for name, value in self.units.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} units must be a non-negative integer, got {value!r}")

    @property
    def input_side(self) -> int:
        return sum(getattr(self, name) for name in INPUT_SIDE)

    @property
    def output_side(self) -> int:
        return sum(getattr(self, name) for name in OUTPUT_SIDE)

    def tokens(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in TOKEN_CLASSES}


def is_long_context(price: Price, input_side: int) -> bool:
    return price.long_context_above is not None and input_side > price.long_context_above


@dataclass(frozen=True)
class Line:
    name: str        # a token class or a fee unit
    quantity: int    # tokens or units
    rate: int        # micro-USD per million tokens, or per thousand units
    exact: int       # quantity x rate, in millionths of a micro-dollar
    note: str = ""   # why this rate: "long context", "priority tier", "unpriced: ..."


@dataclass(frozen=True)
class Breakdown:
    """The arithmetic of one charge, for receipts: every line, the flags, the one rounding."""

    tokens: list[Line]
    fees: list[Line]
    long_context: bool
    tier: Optional[str]          # the tier whose prices applied (None: the base prices)
    tier_unpriced: Optional[str]  # a reported tier the operator has not priced (charged at base prices)
    unpriced: list[str]          # token classes charged at the highest input-side price
    unpriced_units: list[str]    # fee units reported without a price (charged nothing; flagged)
    exact: int                   # in millionths of a micro-dollar
    cost: int                    # micro-dollars, rounded half up once

    @property
    def flagged(self) -> bool:
        return bool(self.unpriced or self.unpriced_units or self.tier_unpriced)


def breakdown(price: Price, usage: Usage) -> Breakdown:
    long_context = is_long_context(price, usage.input_side)
    tier = base_tier(usage.service_tier)
    rates, unpriced, tier_priced = resolve(price, long_context, tier)
    notes = {}
    for name in TOKEN_CLASSES:
        overridden = [why for why, rates_ in ((f"{tier} tier", price.service_tiers.get(tier) if tier_priced else None),
                                              ("long context", price.long_context if long_context else None))
                      if rates_ and name in rates_]
        notes[name] = overridden[0] if overridden else ""
    for name in unpriced:
        notes[name] = "unpriced: highest input-side price"
    token_lines = [Line(name, getattr(usage, name), rates[name], getattr(usage, name) * rates[name], notes[name])
                   for name in TOKEN_CLASSES]
    fee_lines, unpriced_units = [], []
    for name, count in sorted(usage.units.items()):
        if not count:
            continue
        rate = price.fees.get(name)
        if rate is None:
            unpriced_units.append(name)
            fee_lines.append(Line(name, count, 0, 0, "unpriced: not charged"))
        else:
            fee_lines.append(Line(name, count, rate, count * rate * (TOKENS_PER_PRICE_UNIT // UNITS_PER_FEE)))
    exact = sum(line.exact for line in token_lines) + sum(line.exact for line in fee_lines)
    used_unpriced = [name for name in unpriced if getattr(usage, name)]
    return Breakdown(token_lines, fee_lines, long_context, tier if tier_priced else None,
                     None if tier_priced else tier, used_unpriced, unpriced_units, exact,
                     div_round_half_up(exact, TOKENS_PER_PRICE_UNIT))


def exact_cost(price: Price, usage: Usage) -> int:
    """The cost in millionths of a micro-dollar, before the one rounding."""
    return breakdown(price, usage).exact


def quote(price: Price, usage: Usage) -> int:
    """Cost of a call in micro-dollars, rounded half up once."""
    return breakdown(price, usage).cost


def ceiling(price: Price, *, input_tokens: int, output_tokens: int, units: Mapping[str, int],
            long_context: bool, tiers: Iterable[Optional[str]]) -> int:
    """The most a call could cost: every input token at the dearest input-side rate, every output
    token at the dearest output-side rate, each fee at its limit, over every tier it could be served at."""
    worst_in = worst_out = 0
    for tier in tiers:
        for lc in ((False, True) if long_context else (False,)):
            rates = resolve(price, lc, tier)[0]
            worst_in = max(worst_in, *(rates[name] for name in INPUT_SIDE))
            worst_out = max(worst_out, *(rates[name] for name in OUTPUT_SIDE))
    exact = input_tokens * worst_in + output_tokens * worst_out
    exact += sum(count * price.fees.get(name, 0) * (TOKENS_PER_PRICE_UNIT // UNITS_PER_FEE)
                 for name, count in units.items())
    return div_round_half_up(exact, TOKENS_PER_PRICE_UNIT)


# -- the price file's shape (docs/billing.md, "Price files"): decimal strings of USD ---------------

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")  # fee units and tier names


def usd_text(micro: int) -> str:
    """Micro-dollars as the shortest exact decimal string of USD: 3750000 -> "3.75"."""
    whole, frac = divmod(micro, MICRO)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".")


def _rates(spec, where: str, *, required: tuple = ()) -> dict[str, int]:
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be an object of token class -> USD per million")
    if "cache_write" in spec:
        if "cache_write_5m" in spec:
            raise ValueError(f"{where}: give cache_write_5m or its old name cache_write, not both")
        spec = {CLASS_ALIASES.get(name, name): value for name, value in spec.items()}
    unknown = sorted(set(spec) - set(TOKEN_CLASSES))
    if unknown:
        raise ValueError(f"{where}: unknown token class {unknown[0]!r} (classes: {', '.join(TOKEN_CLASSES)})")
    missing = [name for name in required if name not in spec]
    if missing:
        raise ValueError(f"{where}: {missing[0]!r} is required")
    return {name: _usd(value, f"{where}.{name}") for name, value in spec.items()}


def _usd(value, where: str) -> int:
    if not isinstance(value, str):  # a JSON number would be a float somewhere on its way
        raise ValueError(f"{where} must be a decimal string such as \"2.50\", got {value!r}")
    try:
        return parse_usd(value, what=where)
    except InvalidAmount as exc:
        raise ValueError(str(exc)) from None


def _only(spec: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(sorted(allowed))})")


PRICE_FIELDS = {"usd_per_million", "usd_per_thousand", "long_context", "service_tiers"}


def price_from_spec(spec: dict, where: str = "price") -> Price:
    """A Price from the price file's fields; ValueError names the field that is wrong."""
    rates = _rates(spec.get("usd_per_million"), f"{where}.usd_per_million", required=("input", "output"))
    fees_spec = spec.get("usd_per_thousand") or {}
    if not isinstance(fees_spec, dict):
        raise ValueError(f"{where}.usd_per_thousand must be an object of unit -> USD per thousand")
    fees = {}
    for name, value in fees_spec.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ValueError(f"{where}.usd_per_thousand: {name!r} is not a unit name (lower-case letters, "
                             "digits and _)")
        fees[name] = _usd(value, f"{where}.usd_per_thousand.{name}")
    above, long_rates = None, {}
    if spec.get("long_context") is not None:
        lc = spec["long_context"]
        if not isinstance(lc, dict):
            raise ValueError(f"{where}.long_context must be an object")
        _only(lc, {"above_input_tokens", "usd_per_million"}, f"{where}.long_context")
        above = lc.get("above_input_tokens")
        if not isinstance(above, int) or isinstance(above, bool) or above <= 0:
            raise ValueError(f"{where}.long_context.above_input_tokens must be a positive whole number, got {above!r}")
        long_rates = _rates(lc.get("usd_per_million") or {}, f"{where}.long_context.usd_per_million")
    tiers = {}
    tiers_spec = spec.get("service_tiers") or {}
    if not isinstance(tiers_spec, dict):
        raise ValueError(f"{where}.service_tiers must be an object of tier -> prices")
    for tier, tier_spec in tiers_spec.items():
        if not isinstance(tier, str) or not NAME_PATTERN.fullmatch(tier) or tier in BASE_TIERS:
            raise ValueError(f"{where}.service_tiers: {tier!r} is not a tier name that needs its own prices "
                             f"({', '.join(sorted(BASE_TIERS))} are the base prices)")
        if not isinstance(tier_spec, dict):
            raise ValueError(f"{where}.service_tiers.{tier} must be an object with usd_per_million")
        _only(tier_spec, {"usd_per_million"}, f"{where}.service_tiers.{tier}")
        tiers[tier] = _rates(tier_spec.get("usd_per_million") or {}, f"{where}.service_tiers.{tier}.usd_per_million")
    return Price(**rates, fees=fees, long_context_above=above, long_context=long_rates, service_tiers=tiers)


def price_to_spec(price: Price) -> dict:
    """The price file's fields for `price`: what price_from_spec reads back to an equal Price."""
    spec = {"usd_per_million": {name: usd_text(rate) for name, rate in price.base_rates().items() if rate is not None}}
    if price.fees:
        spec["usd_per_thousand"] = {name: usd_text(rate) for name, rate in sorted(price.fees.items())}
    if price.long_context_above is not None:
        spec["long_context"] = {"above_input_tokens": price.long_context_above,
                                "usd_per_million": {n: usd_text(r) for n, r in price.long_context.items()}}
    if price.service_tiers:
        spec["service_tiers"] = {tier: {"usd_per_million": {n: usd_text(r) for n, r in rates.items()}}
                                 for tier, rates in sorted(price.service_tiers.items())}
    return spec
