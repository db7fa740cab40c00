"""The issue's table of billing gaps, end to end: a real call through waitress to the fake upstream
speaking each provider's dialect, charged what that provider would bill, to the micro-dollar.

Prices are the providers' published ones; each expected figure is worked out in its comment.
Request bodies are padded so the input the upstream reports is within what the body can account
for (docs/billing.md, "Bounds"): otherwise the charge would be capped, which is a different rule.
"""
import json

import pytest
import requests
from sqlalchemy import select

from portal import catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import LedgerEntry
from portal.pricing import price_from_spec
from tests.fake_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.proxy.conftest import records

pytestmark = pytest.mark.one_backend  # request reading and price arithmetic (conftest.py)

SONNET = {"usd_per_million": {"input": "3", "output": "15", "cache_read": "0.30", "cache_write_5m": "3.75",
                              "cache_write_1h": "6"},
          "usd_per_thousand": {"web_search": "10", "web_fetch": "0"},
          "long_context": {"above_input_tokens": 200000,
                           "usd_per_million": {"input": "6", "output": "22.50", "cache_read": "0.60",
                                               "cache_write_5m": "7.50", "cache_write_1h": "12"}}}
GPT5 = {"usd_per_million": {"input": "1.25", "output": "10", "cache_read": "0.125"},
        "usd_per_thousand": {"web_search": "10", "file_search": "2.50", "code_container": "30"},
        "service_tiers": {"priority": {"usd_per_million": {"input": "2.50", "output": "20", "cache_read": "0.25"}},
                          "flex": {"usd_per_million": {"input": "0.625", "output": "5", "cache_read": "0.0625"}}}}
AUDIO = {"usd_per_million": {"input": "2.50", "output": "10", "input_audio": "32", "output_audio": "64"}}
DEEPSEEK = {"usd_per_million": {"input": "0.28", "output": "0.42", "cache_read": "0.028"}}
GROK = {"usd_per_million": {"input": "3", "output": "15", "cache_read": "0.75"},
        "usd_per_thousand": {"search_sources": "25"}}
KIMI = {"usd_per_million": {"input": "0.60", "output": "2.50", "cache_read": "0.15"}}
ROUTED = {"usd_per_million": {"input": "3", "output": "15", "cache_read": "0.30", "cache_write_5m": "3.75"}}

MODELS = {  # public id: (dialect, protocol, price)
    "sonnet": ("anthropic", "anthropic", SONNET),
    "gpt-5": ("openai", "openai", GPT5),
    "gpt-audio": ("openai", "openai", AUDIO),
    "deepseek-chat": ("deepseek", "openai", DEEPSEEK),
    "grok": ("xai", "openai", GROK),
    "kimi": ("moonshot", "openai", KIMI),
    "routed-sonnet": ("openrouter", "openai", ROUTED),
    "gemini": ("generic-openai", "openai", {"usd_per_million": {"input": "1.25", "output": "10"}}),
}


@pytest.fixture
def priced(app, fake, catalog_ready):
    with atomic():
        for public_id, (dialect, protocol, spec) in MODELS.items():
            upstream = f"up-{public_id}"
            base = fake.url if protocol == "anthropic" else fake.url + "/v1"
            catalog.add_upstream(upstream, protocol, base, ANTHROPIC_KEY if protocol == "anthropic" else OPENAI_KEY,
                                 dialect=dialect, allow_private_host=True)
            catalog.set_model(public_id, upstream, price_from_spec(spec), max_output_tokens=64000)


def _padding(tokens: int) -> str:
    # One byte of body per reported token keeps the report within the body's bound.
    return "x" * tokens


def call(gateway, key, path, body, stream=False):
    body = dict(body, stream=True) if stream else body
    response = requests.post(f"{gateway}{path}", data=json.dumps(body), timeout=30, stream=stream,
                             headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})
    assert response.status_code == 200, response.text
    if stream:
        for _ in response.iter_lines():
            pass
    else:
        response.content
    return response


def charged() -> int:
    """The one charge of the one call, as the ledger took it and the usage record says."""
    [record] = records()
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.id == record.ledger_entry_id))
    assert entry is not None and -entry.amount == record.cost
    assert not record.usage_estimated and not record.usage_clamped
    return record.cost


def messages(model: str, pad: int, **extra) -> dict:
    return {"model": model, "max_tokens": 8000, **extra,
            "messages": [{"role": "user", "content": _padding(pad)}]}


def chat(model: str, pad: int, **extra) -> dict:
    return {"model": model, "max_completion_tokens": 8000, **extra,
            "messages": [{"role": "user", "content": _padding(pad)}]}


@pytest.mark.parametrize("stream", [False, True])
def test_long_context_is_billed_entirely_at_long_context_prices(gateway, fake, key, priced, stream):
    # 150K input + 80K cache reads = 230K > 200K: 150,000 x 6 + 80,000 x 0.60 + 4,000 x 22.50 = 1,038,000
    fake.next(dialect="anthropic", input=150_000, cache_read=80_000, output=4_000)
    call(gateway, key, "/v1/messages", messages("sonnet", 240_000), stream)
    assert charged() == 1_038_000
    assert records()[0].long_context


@pytest.mark.parametrize("stream", [False, True])
def test_one_hour_cache_writes_are_billed_at_their_own_price(gateway, fake, key, priced, stream):
    # 50 x 3 + 500 x 15 + 100,000 x 6 = 150 + 7,500 + 600,000 = 607,650 (at 3.75: 382,650)
    fake.next(dialect="anthropic", input=50, output=500, cache_write_1h=100_000)
    call(gateway, key, "/v1/messages", messages("sonnet", 110_000), stream)
    assert charged() == 607_650
    assert records()[0].cache_write_1h_tokens == 100_000


@pytest.mark.parametrize("tier, expected", [
    ("priority", 150_000),  # 20,000 x 2.50 + 5,000 x 20
    ("flex", 37_500),       # 20,000 x 0.625 + 5,000 x 5
    ("default", 75_000),    # 20,000 x 1.25 + 5,000 x 10
])
@pytest.mark.parametrize("stream", [False, True])
def test_the_tier_that_served_the_call_sets_its_prices(gateway, fake, key, priced, tier, expected, stream):
    fake.next(dialect="openai", input=20_000, output=5_000, service_tier=tier)
    call(gateway, key, "/v1/chat/completions", chat("gpt-5", 25_000, service_tier=tier), stream)
    assert charged() == expected
    assert records()[0].service_tier == tier


@pytest.mark.parametrize("stream", [False, True])
def test_audio_is_billed_at_audio_prices(gateway, fake, key, priced, stream):
    # 200 x 2.50 + 1,000 x 32 + 100 x 10 + 800 x 64 = 500 + 32,000 + 1,000 + 51,200 = 84,700
    fake.next(dialect="openai", input=200, input_audio=1_000, output=100, output_audio=800)
    call(gateway, key, "/v1/chat/completions", chat("gpt-audio", 2_000), stream)
    assert charged() == 84_700


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_web_searches_are_billed_per_search(gateway, fake, key, priced, stream):
    # 1,000 x 3 + 200 x 15 + 3 searches x $10 / 1,000 = 3,000 + 3,000 + 30,000 = 36,000
    fake.next(dialect="anthropic", input=1_000, output=200, units={"web_search": 3})
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
    call(gateway, key, "/v1/messages", messages("sonnet", 100, tools=tools), stream)
    assert charged() == 36_000
    assert records()[0].units == {"web_search": 3}


@pytest.mark.parametrize("stream", [False, True])
def test_openai_built_in_tool_calls_are_billed_per_call(gateway, fake, key, priced, stream):
    # 2,000 x 1.25 + 300 x 10 + 2 searches x $10/1,000 + 1 file search x $2.50/1,000
    # = 2,500 + 3,000 + 20,000 + 2,500 = 28,000
    fake.next(dialect="openai", input=2_000, output=300, units={"web_search": 2, "file_search": 1})
    body = {"model": "gpt-5", "max_output_tokens": 8000, "input": _padding(100),
            "tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}]}
    call(gateway, key, "/v1/responses", body, stream)
    assert charged() == 28_000


@pytest.mark.parametrize("stream", [False, True])
def test_xai_reasoning_beside_the_completion_is_billed(gateway, fake, key, priced, stream):
    # xAI reports reasoning outside completion_tokens: 1,000 x 3 + (300 + 1,500) x 15 = 30,000
    fake.next(dialect="xai", input=1_000, output=300, reasoning=1_500)
    call(gateway, key, "/v1/chat/completions", chat("grok", 1_500), stream)
    assert charged() == 30_000
    assert records()[0].reasoning_tokens == 1_500


def test_xai_search_sources_are_a_fee(gateway, fake, key, priced):
    # 100 x 3 + 10 x 15 + 4 sources x $25 / 1,000 = 300 + 150 + 100,000 = 100,450
    fake.next(dialect="xai", input=100, output=10, units={"search_sources": 4})
    call(gateway, key, "/v1/chat/completions", chat("grok", 200, search_parameters={"mode": "on"}))
    assert charged() == 100_450


@pytest.mark.parametrize("stream", [False, True])
def test_thoughts_only_in_total_tokens_are_billed_as_reasoning(gateway, fake, key, priced, stream):
    # Gemini through an OpenAI adapter: total_tokens exceeds prompt + completion by its thoughts.
    # 1,000 x 1.25 + (200 + 800) x 10 = 1,250 + 10,000 = 11,250 (without the guard: 3,250)
    fake.next(dialect="generic-openai", input=1_000, output=200, hidden=800)
    call(gateway, key, "/v1/chat/completions", chat("gemini", 1_500), stream)
    assert charged() == 11_250
    assert any("total_tokens guard" in flag for flag in records()[0].flags)


@pytest.mark.parametrize("stream", [False, True])
def test_deepseek_cache_hits_are_billed_at_the_hit_price(gateway, fake, key, priced, stream):
    # hit 20,000 x 0.028 + miss 5,000 x 0.28 + 1,000 x 0.42 = 560 + 1,400 + 420 = 2,380
    fake.next(dialect="deepseek", input=5_000, cache_read=20_000, output=1_000)
    call(gateway, key, "/v1/chat/completions", chat("deepseek-chat", 26_000), stream)
    assert charged() == 2_380


def test_moonshot_streamed_usage_is_read_from_the_last_choice(gateway, fake, key, priced):
    # 30,000 x 0.60 + 900 x 2.50 = 18,000 + 2,250 = 20,250 (not an estimate of the relayed text)
    fake.next(dialect="moonshot", input=30_000, output=900)
    call(gateway, key, "/v1/chat/completions", chat("kimi", 31_000), stream=True)
    assert charged() == 20_250


@pytest.mark.parametrize("stream", [False, True])
def test_openrouter_cache_writes_are_billed_at_the_write_price(gateway, fake, key, priced, stream):
    # 1,000 x 3 + 10,000 x 3.75 + 400 x 15 = 3,000 + 37,500 + 6,000 = 46,500
    fake.next(dialect="openrouter", input=1_000, cache_write=10_000, output=400)
    call(gateway, key, "/v1/chat/completions", chat("routed-sonnet", 12_000), stream)
    assert charged() == 46_500


def test_a_charged_response_says_its_charge(gateway, fake, key, priced):
    fake.next(dialect="deepseek", input=5_000, cache_read=20_000, output=1_000)
    response = call(gateway, key, "/v1/chat/completions", chat("deepseek-chat", 26_000))
    assert response.headers["X-Charge-Micro-USD"] == "2380" == str(charged())
