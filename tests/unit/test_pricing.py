import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.money import parse_usd
from portal.pricing import (TOKEN_CLASSES, Price, Usage, breakdown, ceiling, price_from_spec, price_to_spec, quote,
                            usd_text)

HERE = Path(__file__).resolve().parent
# The owners' vectors live beside the repository; the copies in tests/data keep a bare clone testable.
SHARED = HERE.parents[2] / "shared"
VECTOR_FILES = ("pricing-vectors.json", "pricing-vectors-classes.json")


def _vectors(name: str) -> list:
    path = SHARED / name if (SHARED / name).exists() else HERE.parent / "data" / name
    return json.loads(path.read_text())["vectors"]


LEGACY = {"cache_write": "cache_write_5m"}  # the first vectors' cache write is the 5-minute one
VECTORS = [dict(v, file="base") for v in _vectors(VECTOR_FILES[0])] + \
          [dict(v, file="classes") for v in _vectors(VECTOR_FILES[1])]


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_vendored_vectors_match_the_owners_copy(name):
    if not (SHARED / name).exists():
        pytest.skip("no ../shared beside this checkout")
    assert json.loads((SHARED / name).read_text()) == json.loads((HERE.parent / "data" / name).read_text())


def _renamed(mapping: dict) -> dict:
    return {LEGACY.get(k, k): v for k, v in mapping.items()}


@pytest.mark.parametrize("vector", VECTORS, ids=[f"{v['file']}: {v['name']}" for v in VECTORS])
def test_owner_vectors(vector):
    spec = {k: vector[k] for k in ("usd_per_thousand", "long_context", "service_tiers") if k in vector}
    price = price_from_spec({"usd_per_million": _renamed(vector["usd_per_million"]), **spec})
    usage = Usage(**_renamed(vector["tokens"]), units=vector.get("units", {}), service_tier=vector.get("service_tier"))
    assert quote(price, usage) == vector["cost_micro_usd"]
    assert price_from_spec(price_to_spec(price)) == price  # the price file round-trips exactly


def _p(**usd) -> Price:
    return Price(**{name: parse_usd(value) for name, value in usd.items()})


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
    (Price(input=3_000_000, output=0), Usage(cache_read=1_000, cache_write_5m=1_000, cache_write_1h=1_000), 9_000),
    (Price(input=3_000_000, output=0, cache_read=0, cache_write_5m=0, cache_write_1h=0),
     Usage(cache_read=1_000, cache_write_5m=1_000, cache_write_1h=1_000), 0),
    (Price(input=3_000_000, output=0, cache_read=300_000), Usage(cache_read=1_000, cache_write_5m=1_000), 3_300),
    (Price(input=0, output=0), Usage(input=10**9, output=10**9), 0),
    # Reasoning falls back to output; an explicit reasoning price is used as given.
    (_p(input="1", output="10"), Usage(reasoning=1_000), 10_000),
    (_p(input="1", output="10", reasoning="4"), Usage(reasoning=1_000), 4_000),
    # Unpriced audio: the highest input-side price (here the 1-hour cache write), never the plain input price.
    (_p(input="1", output="10", cache_write_1h="2"), Usage(input_audio=1_000), 2_000),
    (_p(input="1", output="10", cache_write_1h="2"), Usage(output_audio=1_000), 2_000),
    (_p(input="1", output="10", input_audio="5"), Usage(input_audio=1_000, output_audio=1_000), 10_000),
])
def test_rounding_and_fallbacks(price, usage, expected):
    assert quote(price, usage) == expected


@pytest.mark.parametrize("bad", [-1, 1.0, True, "3", None])
@pytest.mark.parametrize("name", TOKEN_CLASSES)
def test_usage_rejects_anything_but_non_negative_integers(bad, name):
    with pytest.raises(ValueError, match=f"{name} tokens"):
        Usage(**{name: bad})


@pytest.mark.parametrize("bad", [-1, 2.0, False])
def test_usage_rejects_bad_units(bad):
    with pytest.raises(ValueError, match="web_search units"):
        Usage(units={"web_search": bad})


LONG = {"usd_per_million": {"input": "3", "output": "15", "cache_read": "0.30", "cache_write_1h": "6"},
        "usd_per_thousand": {"web_search": "10"},
        "long_context": {"above_input_tokens": 200_000, "usd_per_million": {"input": "6", "output": "22.50"}},
        "service_tiers": {"priority": {"usd_per_million": {"input": "6", "output": "30"}},
                          "flex": {"usd_per_million": {"output": "7.5"}}}}


@pytest.mark.parametrize("usage, expected", [
    # Every input-side class counts toward the threshold, audio too; at the threshold the base applies.
    (Usage(input=100_000, cache_write_1h=50_000, input_audio=50_000, output=1), 300_000 + 300_000 + 300_000 + 15),
    (Usage(input=100_000, cache_write_1h=50_000, input_audio=50_001, output=1),
     600_000 + 300_000 + 300_006 + 23),  # above: input 6, cache_write_1h 6 (base), audio = highest input side (6)
    # A tier replaces only what it names; flex leaves input at the base price.
    (Usage(input=100_000, output=100_000, service_tier="flex"), 300_000 + 750_000),
    (Usage(input=100_000, output=100_000, service_tier="priority"), 600_000 + 3_000_000),
    # The standard tier's names mean the base prices.
    (Usage(input=100_000, output=0, service_tier="default"), 300_000),
    (Usage(input=100_000, output=0, service_tier="standard"), 300_000),
    # Long context and a tier together: the tier's prices win where both name a class.
    (Usage(input=300_000, output=1_000, service_tier="priority"), 1_800_000 + 30_000),
    (Usage(input=300_000, output=1_000, service_tier="flex"), 1_800_000 + 7_500),
    # Fees: units x USD per thousand, summed with tokens before the one rounding.
    (Usage(units={"web_search": 3}), 30_000),
])
def test_long_context_tiers_and_fees(usage, expected):
    assert quote(price_from_spec(LONG), usage) == expected


def test_breakdown_says_what_applied_and_flags_what_the_operator_never_priced():
    price = price_from_spec(LONG)
    b = breakdown(price, Usage(input=300_000, input_audio=10, units={"web_search": 2, "code_container": 1},
                               service_tier="scale"))
    assert b.long_context and b.tier is None and b.tier_unpriced == "scale"
    assert b.unpriced == ["input_audio"] and b.unpriced_units == ["code_container"] and b.flagged
    lines = {line.name: line for line in b.tokens}
    assert lines["input"].rate == 6_000_000 and lines["input"].note == "long context"
    assert lines["input_audio"].note.startswith("unpriced")
    fees = {line.name: line for line in b.fees}
    assert fees["web_search"].exact == 2 * 10_000_000 * 1_000 and fees["code_container"].exact == 0
    assert b.exact == sum(line.exact for line in b.tokens + b.fees) and b.cost == round(b.exact / 10**6)
    plain = breakdown(price, Usage(input=10, service_tier="priority"))
    assert plain.tier == "priority" and not plain.flagged and not plain.long_context


@pytest.mark.parametrize("kwargs, expected", [
    # Input at the dearest input-side rate (the 1-hour write, 6), output at the dearest output-side one.
    (dict(input_tokens=1_000, output_tokens=1_000, units={}, long_context=False, tiers=(None,)), 6_000 + 15_000),
    # Long context possible: its rates count too (input 6, output 22.50).
    (dict(input_tokens=1_000, output_tokens=1_000, units={}, long_context=True, tiers=(None,)), 6_000 + 22_500),
    # Any tier possible: priority's output (30) is the dearest.
    (dict(input_tokens=1_000, output_tokens=1_000, units={}, long_context=False, tiers=(None, "priority", "flex")),
     6_000 + 30_000),
    (dict(input_tokens=0, output_tokens=0, units={"web_search": 5, "unknown": 9}, long_context=False, tiers=(None,)),
     50_000),
])
def test_ceiling_covers_every_rate_the_call_could_be_charged(kwargs, expected):
    assert ceiling(price_from_spec(LONG), **kwargs) == expected


@pytest.mark.parametrize("spec, message", [
    ({"usd_per_million": {"input": "1"}}, "'output' is required"),
    ({"usd_per_million": {"input": 1, "output": "2"}}, "decimal string"),
    ({"usd_per_million": {"input": "1", "output": "2", "cache_writes": "3"}}, "unknown token class 'cache_writes'"),
    ({"usd_per_million": {"input": "1", "output": "2", "cache_write": "3", "cache_write_5m": "3"}}, "not both"),
    ({"usd_per_million": {"input": "-1", "output": "2"}}, "non-negative"),
    ({"usd_per_million": {"input": "0.0000001", "output": "2"}}, "6 decimal places"),
    ({"usd_per_million": {"input": "1", "output": "2"}, "usd_per_thousand": {"Web Search": "1"}}, "unit name"),
    ({"usd_per_million": {"input": "1", "output": "2"}, "long_context": {"usd_per_million": {"input": "2"}}},
     "above_input_tokens"),
    ({"usd_per_million": {"input": "1", "output": "2"}, "long_context": {"above_input_tokens": 0}},
     "above_input_tokens"),
    ({"usd_per_million": {"input": "1", "output": "2"}, "service_tiers": {"default": {"usd_per_million": {}}}},
     "base prices"),
    ({"usd_per_million": {"input": "1", "output": "2"}, "service_tiers": {"priority": {"input": "2"}}},
     "unknown field 'input'"),
])
def test_price_file_errors_name_the_field(spec, message):
    with pytest.raises(ValueError, match=message):
        price_from_spec(spec)


def test_the_old_cache_write_name_is_the_five_minute_write():
    spec = {"usd_per_million": {"input": "3", "output": "15", "cache_write": "3.75"},
            "long_context": {"above_input_tokens": 10, "usd_per_million": {"cache_write": "7.50"}},
            "service_tiers": {"priority": {"usd_per_million": {"cache_write": "5"}}}}
    price = price_from_spec(spec)
    assert (price.cache_write_5m, price.long_context, price.service_tiers) == (
        3_750_000, {"cache_write_5m": 7_500_000}, {"priority": {"cache_write_5m": 5_000_000}})
    assert price_to_spec(price)["usd_per_million"]["cache_write_5m"] == "3.75"  # written back by its new name


@pytest.mark.parametrize("micro, text", [(0, "0"), (3_750_000, "3.75"), (1, "0.000001"), (22_500_000, "22.5"),
                                         (10_000_000, "10")])
def test_usd_text_is_exact(micro, text):
    assert usd_text(micro) == text and parse_usd(text) == micro


prices = st.integers(min_value=0, max_value=10**9)
optional = st.none() | prices
tokens = st.integers(min_value=0, max_value=10**8)


@given(prices, prices, optional, optional, optional, optional, optional,
       st.lists(tokens, min_size=len(TOKEN_CLASSES), max_size=len(TOKEN_CLASSES)))
def test_matches_decimal_reference(pi, po, pcr, pcw5, pcw1, pia, prs, counts):
    price = Price(input=pi, output=po, cache_read=pcr, cache_write_5m=pcw5, cache_write_1h=pcw1, input_audio=pia,
                  reasoning=prs)
    usage = Usage(**dict(zip(TOKEN_CLASSES, counts)))
    cache = {n: pi if p is None else p for n, p in (("cache_read", pcr), ("cache_write_5m", pcw5),
                                                     ("cache_write_1h", pcw1))}
    audio_in = max(pi, *cache.values()) if pia is None else pia
    rate = {"input": pi, "output": po, **cache, "input_audio": audio_in,
            "output_audio": max(pi, *cache.values(), audio_in), "reasoning": po if prs is None else prs}
    exact = Decimal(sum(usage.tokens()[n] * rate[n] for n in TOKEN_CLASSES)) / Decimal(1_000_000)
    assert quote(price, usage) == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
