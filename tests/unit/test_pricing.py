import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.money import parse_usd
from portal.pricing import Price, Usage, quote

HERE = Path(__file__).resolve().parent
# The owners' vectors live beside the repository; the copy in tests/data keeps a bare clone testable.
SHARED = HERE.parents[2] / "shared" / "pricing-vectors.json"
VECTORS_FILE = SHARED if SHARED.exists() else HERE.parent / "data" / "pricing-vectors.json"
VECTORS = json.loads(VECTORS_FILE.read_text())["vectors"]


def price_from_usd(usd: dict) -> Price:
    return Price(**{name: parse_usd(value) for name, value in usd.items()})


def test_vendored_vectors_match_the_owners_copy():
    if not SHARED.exists():
        pytest.skip("no ../shared beside this checkout")
    assert json.loads(SHARED.read_text()) == json.loads((HERE.parent / "data" / "pricing-vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_owner_vectors(vector):
    price = price_from_usd(vector["usd_per_million"])
    assert quote(price, Usage(**vector["tokens"])) == vector["cost_micro_usd"]


@pytest.mark.parametrize("price, usage, expected", [
    # 499,999 / 1,000,000 rounds down; 500,000 rounds up; 1,499,999 down; 1,500,000 up.
    (Price(input=499_999, output=0), Usage(input=1), 0),
    (Price(input=500_000, output=0), Usage(input=1), 1),
    (Price(input=1_499_999, output=0), Usage(input=1), 1),
    (Price(input=1_500_000, output=0), Usage(input=1), 2),
    # Rounding happens once on the sum: two halves make one whole.
    (Price(input=250_000, output=250_000), Usage(input=1, output=1), 1),
    (Price(input=250_000, output=249_999), Usage(input=1, output=1), 0),
    # Cache prices: unset falls back to input, an explicit zero stays zero.
    (Price(input=3_000_000, output=0), Usage(cache_read=1_000, cache_write=1_000), 6_000),
    (Price(input=3_000_000, output=0, cache_read=0, cache_write=0), Usage(cache_read=1_000, cache_write=1_000), 0),
    (Price(input=3_000_000, output=0, cache_read=300_000), Usage(cache_read=1_000, cache_write=1_000), 3_300),
    (Price(input=0, output=0), Usage(input=10**9, output=10**9), 0),
])
def test_rounding_and_cache_fallbacks(price, usage, expected):
    assert quote(price, usage) == expected


@pytest.mark.parametrize("bad", [-1, 1.0, True, "3", None])
def test_usage_rejects_anything_but_non_negative_integers(bad):
    with pytest.raises(ValueError, match="input tokens"):
        Usage(input=bad)


prices = st.integers(min_value=0, max_value=10**9)
tokens = st.integers(min_value=0, max_value=10**8)


@given(prices, prices, st.none() | prices, st.none() | prices, tokens, tokens, tokens, tokens)
def test_matches_decimal_reference(pi, po, pcr, pcw, ti, to, tcr, tcw):
    price = Price(input=pi, output=po, cache_read=pcr, cache_write=pcw)
    usage = Usage(input=ti, output=to, cache_read=tcr, cache_write=tcw)
    cr = pi if pcr is None else pcr
    cw = pi if pcw is None else pcw
    exact = (Decimal(ti * pi + to * po + tcr * cr + tcw * cw) / Decimal(1_000_000))
    assert quote(price, usage) == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
