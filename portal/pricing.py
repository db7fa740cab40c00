"""The pricing rule: one pure function from a price and a call's usage to micro-dollars.

cost = round_half_up(sum over token classes of tokens x micro-USD-per-million / 1,000,000),
rounded once per call. Unset cache prices fall back to the input price. See docs/billing.md.
"""
from dataclasses import dataclass
from typing import Optional

from .money import div_round_half_up

TOKENS_PER_PRICE_UNIT = 1_000_000
TOKEN_CLASSES = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True)
class Price:
    """Micro-dollars per million tokens for each token class."""

    input: int
    output: int
    cache_read: Optional[int] = None
    cache_write: Optional[int] = None

    def per_class(self) -> dict[str, int]:
        """Effective price of every class, with the cache fallbacks applied."""
        return {
            "input": self.input,
            "output": self.output,
            "cache_read": self.input if self.cache_read is None else self.cache_read,
            "cache_write": self.input if self.cache_write is None else self.cache_write,
        }


@dataclass(frozen=True)
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def __post_init__(self):
        for name in TOKEN_CLASSES:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} tokens must be a non-negative integer, got {value!r}")


def exact_cost(price: Price, usage: Usage) -> int:
    """Sum of tokens x price over all classes: the cost in millionths of a micro-dollar."""
    prices = price.per_class()
    return sum(getattr(usage, name) * prices[name] for name in TOKEN_CLASSES)


def quote(price: Price, usage: Usage) -> int:
    """Cost of a call in micro-dollars, rounded half up once."""
    return div_round_half_up(exact_cost(price, usage), TOKENS_PER_PRICE_UNIT)

