"""Integer micro-dollar helpers. 1 USD = 1,000,000 micro-USD; no float ever represents money."""
import re
from decimal import Decimal

from .errors import InvalidAmount

MICRO = 1_000_000
_USD = re.compile(r"^\s*\$?(?P<digits>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*$")


def parse_usd(text: str, *, what: str = "amount") -> int:
    """Parse a non-negative decimal USD string ("5", "0.000050", "$1.25") into micro-dollars.

    More than six decimal places would need rounding, so it is refused rather than guessed.
    """
    match = _USD.match(str(text))
    if not match:
        raise InvalidAmount(f"{what} must be a non-negative decimal number of USD, got {text!r}", typed=str(text))
    value = Decimal(match["digits"])
    micro = value * MICRO
    if micro != micro.to_integral_value():
        raise InvalidAmount(f"{what} has more than 6 decimal places: {text!r}", typed=str(text), too_precise=True)
    return int(micro)


def format_usd(micro: int) -> str:
    """Render micro-dollars as "$1.50", "$0.000050" or "-$0.25": cents always, exact always."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(int(micro)), MICRO)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}${whole:,}.{digits}"


def div_round_half_up(numerator: int, denominator: int) -> int:
    """Integer division of non-negative numbers, rounding exact halves up."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("div_round_half_up takes a non-negative numerator and positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)
