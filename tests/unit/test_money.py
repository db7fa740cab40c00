import pytest

from portal.errors import InvalidAmount
from portal.money import div_round_half_up, format_usd, parse_usd


@pytest.mark.parametrize("text, micro", [
    ("5", 5_000_000), ("0.000050", 50), ("$1.25", 1_250_000), (".5", 500_000), (" 2.50 ", 2_500_000),
    ("0", 0), ("0.000001", 1), ("123456789.123456", 123_456_789_123_456),
])
def test_parse_usd(text, micro):
    assert parse_usd(text) == micro


@pytest.mark.parametrize("text, message", [
    ("-1", "non-negative decimal"), ("1e3", "non-negative decimal"), ("abc", "non-negative decimal"),
    ("", "non-negative decimal"), ("NaN", "non-negative decimal"), ("1,000", "non-negative decimal"),
    ("0.0000001", "more than 6 decimal places"), ("1.0000005", "more than 6 decimal places"),
])
def test_parse_usd_refuses(text, message):
    with pytest.raises(InvalidAmount, match=message):
        parse_usd(text)


@pytest.mark.parametrize("micro, text", [
    (0, "$0.00"), (50, "$0.00005"), (5_000_000, "$5.00"), (1_250_000, "$1.25"), (-250_000, "-$0.25"),
    (1_234_567_890_000, "$1,234,567.89"), (1_000_001, "$1.000001"),
])
def test_format_usd(micro, text):
    assert format_usd(micro) == text


@pytest.mark.parametrize("n, d, q", [(0, 10, 0), (4, 10, 0), (5, 10, 1), (15, 10, 2), (14, 10, 1), (10, 10, 1)])
def test_div_round_half_up(n, d, q):
    assert div_round_half_up(n, d) == q


def test_div_round_half_up_refuses_negative():
    with pytest.raises(ValueError):
        div_round_half_up(-1, 10)
