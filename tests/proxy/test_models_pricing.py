"""GET /v1/models carries each model's prices the way OpenRouter lists them (decimal strings of USD per
token, from integer micro-dollars), its context length and output limit, and still suits the SDKs."""
from decimal import Decimal

import pytest
from anthropic import Anthropic
from openai import OpenAI

from portal import apikeys, catalog, model_catalog
from portal.database import atomic
from portal.pricing import Price
from tests.factories import make_user


@pytest.mark.parametrize("micro_per_million, text", [
    (1_000_000, "0.000001"),    # one micro-dollar per token
    (1, "0.000000000001"),      # the smallest price there is
    (0, "0"),
    (3_000_000, "0.000003"),
    (300_000, "0.0000003"),
    (3_750_000, "0.00000375"),
    (1_234_567, "0.000001234567"),
    (1_000_000_000_000, "1"),   # a dollar per token
    (123_456_789_000_000, "123.456789"),
])
def test_usd_per_token_is_exact(micro_per_million, text):
    assert model_catalog.usd_per_token(micro_per_million) == text
    assert Decimal(text) * 10**12 == micro_per_million  # nothing lost on the way


def test_fees_per_use():
    assert model_catalog.usd_per_unit(10_000_000) == "0.01"  # $10 per 1,000 searches
    assert model_catalog.usd_per_unit(1) == "0.000000001"


def _listed(client, **headers):
    with atomic():
        _, plaintext = apikeys.issue(make_user(f"lister{len(headers)}@example.com", credit=1), "k")
    return client.get("/v1/models", headers={"Authorization": f"Bearer {plaintext}", **headers}).get_json()


def test_models_carry_openrouter_prices_and_limits(app, client):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("tiny", "echo", Price(input=1_000_000, output=2_000_000), max_output_tokens=2048,
                          context_window=32_000)
        catalog.set_model("full", "echo", Price(input=1, output=3_000_000, cache_read=300_000, cache_write_5m=3_750_000,
                                                cache_write_1h=6_000_000, input_audio=40_000_000,
                                                output_audio=80_000_000, reasoning=4_000_000,
                                                fees={"web_search": 10_000_000}))
    listed = {m["id"]: m for m in _listed(client)["data"]}
    tiny = listed["tiny"]
    assert {k: v for k, v in tiny["pricing"].items() if k != "usd_per_million"} == {
        "prompt": "0.000001", "completion": "0.000002", "request": "0"}
    assert tiny["pricing"]["usd_per_million"] == {"input": "1", "output": "2"}  # the price-file shape stays
    assert tiny["context_length"] == 32_000
    assert tiny["top_provider"] == {"context_length": 32_000, "max_completion_tokens": 2048}
    assert (tiny["object"], tiny["owned_by"], type(tiny["created"])) == ("model", "tollgate", int)
    full = listed["full"]
    assert {k: v for k, v in full["pricing"].items() if k not in ("usd_per_million", "usd_per_thousand")} == {
        "prompt": "0.000000000001", "completion": "0.000003", "input_cache_read": "0.0000003",
        "input_cache_write": "0.00000375", "input_cache_write_1h": "0.000006", "audio": "0.00004",
        "audio_output": "0.00008", "internal_reasoning": "0.000004", "request": "0", "web_search": "0.01"}
    assert full["context_length"] == catalog.DEFAULT_CONTEXT_WINDOW
    anthropic_shape = {m["id"]: m for m in _listed(client, **{"anthropic-version": "2023-06-01"})["data"]}
    assert anthropic_shape["tiny"]["pricing"] == tiny["pricing"] and anthropic_shape["tiny"]["type"] == "model"
    assert anthropic_shape["tiny"]["top_provider"] == tiny["top_provider"]


def test_the_sdks_still_list_models(gateway, key):
    with OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=20) as client:
        listed = {m.id: m for m in client.models.list()}
    assert sorted(listed) == ["claude-test", "echo-1", "gpt-test"]
    gpt = listed["gpt-test"]
    assert gpt.object == "model" and gpt.owned_by == "tollgate"
    assert gpt.model_extra["pricing"]["prompt"] == "0.000002" and gpt.model_extra["pricing"]["completion"] == "0.000008"
    assert gpt.model_extra["top_provider"]["max_completion_tokens"] == 4096
    with Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=20) as client:
        claude = {m.id: m for m in client.models.list()}["claude-test"]
    assert claude.model_extra["pricing"]["input_cache_write"] == "0.00000375"
    assert claude.model_extra["context_length"] == catalog.DEFAULT_CONTEXT_WINDOW
