"""money.py at its edges: signs, separators, trailing zeros, the sixth decimal, bad denominators."""
import pytest

from portal.errors import InvalidAmount
from portal.money import div_round_half_up, format_usd, parse_usd


@pytest.mark.parametrize("micro, text", [
    (-1, "-$0.000001"), (-50, "-$0.00005"), (-1_000_000, "-$1.00"), (-1_234_567_890_000, "-$1,234,567.89"),
    (1, "$0.000001"), (10, "$0.00001"), (100_000, "$0.10"), (1_010_000, "$1.01"), (999_999, "$0.999999"),
    (1_000_000_000, "$1,000.00"), (999_000_000, "$999.00"),
])
def test_format_usd_edges(micro, text):
    assert format_usd(micro) == text


@pytest.mark.parametrize("text, micro", [
    ("1.5", 1_500_000), ("1.000000", 1_000_000), ("0.100000", 100_000), ("$0.000001", 1), ("12.34", 12_340_000),
    ("007", 7_000_000), ("\t3\n", 3_000_000),
])
def test_parse_usd_edges(text, micro):
    assert parse_usd(text) == micro


@pytest.mark.parametrize("text", ["5 dollars", "$ 5", "5$", "--5", "+5", "1.", "1..5", "1.2.3", "Infinity",
                                  "0x10", "1_000", "5\n6"])
def test_parse_usd_refuses_anything_else(text):
    with pytest.raises(InvalidAmount):
        parse_usd(text)


def test_parse_usd_names_the_field():
    with pytest.raises(InvalidAmount, match="price must be"):
        parse_usd("x", what="price")


def test_parse_and_format_round_trip():
    for micro in (0, 1, 49, 50, 999_999, 1_000_000, 1_000_001, 123_456_789):
        assert parse_usd(format_usd(micro).replace(",", "")) == micro


@pytest.mark.parametrize("n, d, q", [(1, 2, 1), (1, 3, 0), (2, 3, 1), (3, 2, 2), (5, 2, 3), (499_999, 10**6, 0),
                                     (500_000, 10**6, 1), (10**18 + 5 * 10**5, 10**6, 10**12 + 1), (7, 1, 7)])
def test_div_round_half_up_edges(n, d, q):
    assert div_round_half_up(n, d) == q


@pytest.mark.parametrize("n, d", [(1, 0), (0, 0), (1, -1), (-1, 1)])
def test_div_round_half_up_refuses_bad_operands(n, d):
    with pytest.raises(ValueError):
        div_round_half_up(n, d)


@pytest.mark.parametrize("text", ["٥", "５", "1.٥", "१०", "５.00"])
def test_parse_usd_takes_only_ascii_digits(text):
    """Python's \\d matches every script's digits; an amount is typed in 0-9 or refused."""
    with pytest.raises(InvalidAmount):
        parse_usd(text)
