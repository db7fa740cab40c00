"""The models page: limits, prices per token class, an example cost from the real pricing code, the
API routes each model answers, and a search that works without JavaScript (and as an htmx fragment)."""
import re

from portal import catalog, model_catalog
from portal.database import atomic
from portal.pricing import Price, Usage, quote
from tests.web.test_pricing_page import text_of

SONNET = Price(input=3_000_000, output=15_000_000, cache_read=300_000, cache_write_5m=3_750_000,
               cache_write_1h=6_000_000)
ODD = Price(input=1_234_567, output=7_654_321, reasoning=9_000_001)


def _models():
    with atomic():
        catalog.add_upstream("openai", "openai", "https://api.openai.com/v1")
        catalog.add_upstream("anthropic", "anthropic", "https://api.anthropic.com")
        catalog.add_upstream("echo", "echo")
        catalog.set_model("claude-sonnet", "anthropic", SONNET, max_output_tokens=64_000, context_window=1_000_000)
        catalog.set_model("gpt-odd", "openai", ODD, max_output_tokens=32_000)
        catalog.set_model("echo-1", "echo", Price(input=1, output=1), max_output_tokens=1024)
        catalog.set_model("retired", "openai", Price(input=1, output=1), enabled=False)


def row(html: str, model: str) -> str:
    match = re.search(rf'<tr data-model="{model}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {model}"
    return match.group(1)


def test_every_public_model_with_limits_prices_example_and_routes(client):
    _models()
    html = client.get("/models").get_data(as_text=True)
    assert re.findall(r'<tr data-model="([^"]+)">', html) == ["claude-sonnet", "echo-1", "gpt-odd"]
    sonnet = text_of(row(html, "claude-sonnet"))
    assert "1,000,000 tokens" in sonnet and "64,000 tokens" in sonnet
    assert ("Input: $3.00 Output: $15.00 Cache read: $0.30 Cache write (5 minutes): $3.75 "
            "Cache write (1 hour): $6.00 Reasoning: the output price") in sonnet
    assert "A 2,000-token prompt with a 500-token answer costs $0.0135." in sonnet
    # Each model takes the other API's routes too, translated (proxy/translate/); embeddings only from OpenAI.
    assert re.findall(r"<code>(/v1/[^<]+)</code>", row(html, "claude-sonnet")) == [
        "/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens"]
    assert re.findall(r"<code>(/v1/[^<]+)</code>", row(html, "gpt-odd")) == [
        "/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/messages", "/v1/messages/count_tokens"]
    assert len(re.findall(r"<code>(/v1/[^<]+)</code>", row(html, "echo-1"))) == 5  # the echo model takes every route
    assert "a call in the other API than its provider's is translated, and charged the same" in text_of(html)
    assert '<table class="cards"' in html and 'data-label="Example cost"' in html
    assert 'href="/pricing"' in html and 'href="/models"' in client.get("/pricing").get_data(as_text=True)


def test_the_example_cost_is_the_pricing_codes(client):
    _models()
    expected = quote(ODD, Usage(input=2_000, output=500))
    assert expected == model_catalog.example_cost(ODD) == 6_296  # 2,469.134 + 3,827.1605 rounded once
    html = client.get("/models").get_data(as_text=True)
    assert "costs $0.006296." in text_of(row(html, "gpt-odd"))
    assert "Reasoning: $9.000001" in text_of(row(html, "gpt-odd"))


def test_search_filters_on_the_server(client):
    _models()
    found = client.get("/models?q=Sonnet").get_data(as_text=True)
    assert re.findall(r'<tr data-model="([^"]+)">', found) == ["claude-sonnet"]
    assert "1 of 3 models match “Sonnet”." in text_of(found) and 'value="Sonnet"' in found
    by_route = client.get("/models?q=/v1/embeddings").get_data(as_text=True)
    assert re.findall(r'<tr data-model="([^"]+)">', by_route) == ["echo-1", "gpt-odd"]
    assert len(re.findall(r'<tr data-model="', client.get("/models?q=/v1/messages").get_data(as_text=True))) == 3
    none = client.get("/models?q=nothing-like-it").get_data(as_text=True)
    assert "<table" not in none and "No model matches “nothing-like-it”." in text_of(none)
    assert 'class="empty"' in none and 'href="/models"' in none


def test_htmx_gets_only_the_results(client):
    _models()
    response = client.get("/models?q=gpt", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert "HX-Request" in response.headers["Vary"]
    assert "<html" not in html and "<h1" not in html
    assert re.findall(r'<tr data-model="([^"]+)">', html) == ["gpt-odd"]


def test_models_page_in_chinese(client):
    _models()
    html = client.get("/models", headers={"Accept-Language": "zh"}).get_data(as_text=True)
    assert "<h1>模型</h1>" in html
    assert "2,000 token 的提示加 500 token 的回答，费用为 US$0.0135。" in text_of(row(html, "claude-sonnet"))


def test_no_models_says_so(client):
    html = client.get("/models").get_data(as_text=True)
    assert "No models are available yet." in html and 'class="empty"' in html
