"""The table of issue 9, row by row: a usage object shaped as the provider sends it, read in its
dialect and priced with the provider's published prices, costs what the upstream bills.

Each docstring gives what the gateway charged before it read these fields. (The last row of the
table, a client that disconnects early, is tested with the stream drain.)
"""
import json

from portal.pricing import breakdown, price_from_spec, quote
from proxy import metering
from proxy.metering import CHAT, MESSAGES, RESPONSES, StreamMeter
from proxy.sse import Event

SONNET_45 = price_from_spec({  # Anthropic's list price for Claude Sonnet 4.5
    "usd_per_million": {"input": "3", "output": "15", "cache_read": "0.30", "cache_write_5m": "3.75",
                        "cache_write_1h": "6"},
    "usd_per_thousand": {"web_search": "10"},
    "long_context": {"above_input_tokens": 200_000,
                     "usd_per_million": {"input": "6", "output": "22.50", "cache_read": "0.60",
                                         "cache_write_5m": "7.50", "cache_write_1h": "12"}}})
GPT_5 = price_from_spec({  # OpenAI's list price for gpt-5, with its Priority and Flex processing
    "usd_per_million": {"input": "1.25", "cache_read": "0.125", "output": "10"},
    "usd_per_thousand": {"web_search": "10"},
    "service_tiers": {"priority": {"usd_per_million": {"input": "2.50", "cache_read": "0.25", "output": "20"}},
                      "flex": {"usd_per_million": {"input": "0.625", "cache_read": "0.0625", "output": "5"}}}})
GPT_AUDIO = price_from_spec({"usd_per_million": {"input": "2.50", "output": "10", "input_audio": "32",
                                                 "output_audio": "64"}})
GROK_4 = price_from_spec({"usd_per_million": {"input": "3", "cache_read": "0.75", "output": "15"},
                          "usd_per_thousand": {"search_sources": "25"}})
GEMINI_25_PRO = price_from_spec({"usd_per_million": {"input": "1.25", "output": "10"}})
DEEPSEEK_CHAT = price_from_spec({"usd_per_million": {"input": "0.28", "cache_read": "0.028", "output": "0.42"}})
KIMI_K2 = price_from_spec({"usd_per_million": {"input": "0.60", "cache_read": "0.15", "output": "2.50"}})
OPENROUTER_SONNET = price_from_spec({"usd_per_million": {"input": "3", "output": "15", "cache_read": "0.30",
                                                         "cache_write_5m": "3.75"}})


def billed(price, route, body, dialect="openai") -> int:
    return quote(price, metering.usage_from_body(route, body, dialect))


def test_long_context_sonnet_is_billed_entirely_at_the_long_context_prices():
    """Before: 534,000 (the base prices)."""
    body = {"usage": {"input_tokens": 150_000, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 80_000,
                      "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                      "output_tokens": 4_000, "service_tier": "standard"}}
    usage = metering.usage_from_body(MESSAGES, body, "anthropic")
    assert breakdown(SONNET_45, usage).long_context
    assert quote(SONNET_45, usage) == 1_038_000


def test_one_hour_cache_writes_are_billed_at_twice_the_input_price():
    """Before: 382,650 (every write at the 5-minute price)."""
    body = {"usage": {"input_tokens": 50, "cache_creation_input_tokens": 100_000, "cache_read_input_tokens": 0,
                      "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 100_000},
                      "output_tokens": 500, "service_tier": "standard"}}
    assert billed(SONNET_45, MESSAGES, body, "anthropic") == 607_650


def gpt5_chat(tier: str) -> dict:
    return {"object": "chat.completion", "model": "gpt-5-2025-08-07", "service_tier": tier,
            "usage": {"prompt_tokens": 20_000, "completion_tokens": 5_000, "total_tokens": 25_000,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 3_000, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}}}


def test_the_service_tier_that_served_the_call_sets_its_prices():
    """Before: 75,000 whatever the tier (the operator lost 75,000 on priority; flex users paid 37,500 too much)."""
    assert billed(GPT_5, CHAT, gpt5_chat("priority")) == 150_000
    assert billed(GPT_5, CHAT, gpt5_chat("flex")) == 37_500
    assert billed(GPT_5, CHAT, gpt5_chat("default")) == 75_000


def test_a_streamed_priority_call_is_billed_at_priority_prices():
    meter = StreamMeter(CHAT)
    chunk = {"object": "chat.completion.chunk", "service_tier": "priority"}
    meter.feed(Event(None, json.dumps({**chunk, "choices": [{"index": 0, "delta": {"content": "hi"}}]})))
    meter.feed(Event(None, json.dumps({**chunk, "choices": [], "usage": gpt5_chat("priority")["usage"]})))
    usage, estimated = meter.charge(100)
    assert not estimated and quote(GPT_5, usage) == 150_000


def test_audio_tokens_are_billed_at_audio_prices():
    """Before: 12,000 (audio priced as text)."""
    body = {"usage": {"prompt_tokens": 1_200, "completion_tokens": 900, "total_tokens": 2_100,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 1_000},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 800,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}}}
    assert billed(GPT_AUDIO, CHAT, body) == 84_700


def test_anthropic_web_searches_are_billed_per_search():
    """Before: 10,500 (the 3 searches, 30,000, unbilled)."""
    body = {"usage": {"input_tokens": 1_000, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": 500, "server_tool_use": {"web_search_requests": 3}}}
    assert billed(SONNET_45, MESSAGES, body, "anthropic") == 3_000 + 7_500 + 30_000


def test_openai_web_search_calls_are_billed_per_call():
    """Before: 6,250 (the 3 searches, 30,000, unbilled)."""
    search = {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "q"}}
    body = {"object": "response", "status": "completed",
            "output": [{**search, "id": f"ws_{i}"} for i in range(3)] + [
                {"type": "message", "id": "msg_1", "role": "assistant",
                 "content": [{"type": "output_text", "text": "...", "annotations": []}]}],
            "usage": {"input_tokens": 1_000, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 500,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1_500}}
    assert billed(GPT_5, RESPONSES, body) == 1_250 + 5_000 + 30_000


def test_xai_reasoning_beside_the_completion_is_billed():
    """Before: 21,000 (the reasoning, 30% of the call, unbilled)."""
    body = {"usage": {"prompt_tokens": 2_000, "completion_tokens": 1_000, "total_tokens": 3_600,
                      "prompt_tokens_details": {"text_tokens": 2_000, "audio_tokens": 0, "image_tokens": 0,
                                                "cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 600, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0},
                      "num_sources_used": 0}}
    assert billed(GROK_4, CHAT, body, "xai") == 30_000


def test_xai_search_sources_are_a_fee_the_operator_prices():
    body = {"usage": {"prompt_tokens": 2_000, "completion_tokens": 1_000, "total_tokens": 3_000,
                      "completion_tokens_details": {"reasoning_tokens": 0}, "num_sources_used": 4}}
    assert billed(GROK_4, CHAT, body, "xai") == 6_000 + 15_000 + 100_000  # $25 per thousand sources


def test_thoughts_reported_only_in_total_tokens_are_billed_as_reasoning():
    """Gemini through an OpenAI-compatible adapter. Before: 4,250."""
    body = {"usage": {"prompt_tokens": 1_000, "completion_tokens": 300, "total_tokens": 2_000}}
    usage = metering.usage_from_body(CHAT, body, "generic-openai")
    assert usage.notes == ("total_tokens guard: +700 tokens charged as reasoning",)
    assert quote(GEMINI_25_PRO, usage) == 11_250


def test_deepseek_cache_hits_are_billed_at_the_hit_price():
    """Before: 34,020 (every prompt token at the miss price)."""
    body = {"usage": {"prompt_tokens": 120_000, "completion_tokens": 1_000, "total_tokens": 121_000,
                      "prompt_cache_hit_tokens": 110_000, "prompt_cache_miss_tokens": 10_000}}
    assert billed(DEEPSEEK_CHAT, CHAT, body, "deepseek") == 3_080 + 2_800 + 420


def test_moonshot_streamed_usage_is_read_from_the_last_choice():
    """Before: the estimate, 500 in / 3 out, for a reported 30,000 / 900."""
    meter = StreamMeter(CHAT, "moonshot")
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "kimi-k2-0905-preview"}
    for text in ("Hello", " there", "!"):
        meter.feed(Event(None, json.dumps({**base, "choices": [{"index": 0, "delta": {"content": text},
                                                                "finish_reason": None}]})))
    meter.feed(Event(None, json.dumps({**base, "choices": [{
        "index": 0, "delta": {}, "finish_reason": "stop",
        "usage": {"prompt_tokens": 30_000, "completion_tokens": 900, "total_tokens": 30_900}}]})))
    meter.feed(Event(None, "[DONE]"))
    usage, estimated = meter.charge(2_000)
    assert not estimated and quote(KIMI_K2, usage) == 18_000 + 2_250


def test_openrouter_cache_writes_are_billed_at_the_write_price():
    """Before: 39,000 (the writes at the input price)."""
    body = {"usage": {"prompt_tokens": 12_000, "completion_tokens": 200, "total_tokens": 12_200,
                      "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 10_000, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}, "cost": 0.0465, "is_byok": False}}
    assert billed(OPENROUTER_SONNET, CHAT, body, "openrouter") == 6_000 + 37_500 + 3_000
