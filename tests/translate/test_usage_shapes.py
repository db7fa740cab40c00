"""Usage told to a client in its own API's shape (proxy/translate/common.py), built from the token
classes the meter read from the upstream's report: every class lands somewhere, and what the
client reads back with its API's rules is what it was charged."""
import pytest

from portal.pricing import Usage
from proxy.dialects import read
from proxy.protocols import CHAT, MESSAGES, RESPONSES
from proxy.translate.common import anthropic_usage, chat_usage, classes, responses_usage
from tests.translate.streams import document, sse

EVERY = Usage(input=1000, cache_read=3000, cache_write_5m=200, cache_write_1h=50, input_audio=7, output=400,
              reasoning=300, output_audio=9)


def test_chat_shape():
    assert chat_usage(EVERY) == {
        "prompt_tokens": 1000 + 7 + 3000 + 250, "completion_tokens": 400 + 300 + 9, "total_tokens": 4257 + 709,
        "prompt_tokens_details": {"cached_tokens": 3000, "cache_write_tokens": 250, "audio_tokens": 7},
        "completion_tokens_details": {"reasoning_tokens": 300, "audio_tokens": 9}}


def test_anthropic_shape():
    assert anthropic_usage(EVERY) == {
        "input_tokens": 1007, "cache_creation_input_tokens": 250, "cache_read_input_tokens": 3000,
        "output_tokens": 709, "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 50}}
    # the breakdown only when some writes are kept an hour, as Anthropic reports it
    assert "cache_creation" not in anthropic_usage(Usage(input=1, cache_write_5m=5))


def test_responses_shape():
    assert responses_usage(EVERY) == {
        "input_tokens": 4257, "input_tokens_details": {"cached_tokens": 3000, "cache_write_tokens": 250},
        "output_tokens": 709, "output_tokens_details": {"reasoning_tokens": 300}, "total_tokens": 4966}


@pytest.mark.parametrize("shape", [anthropic_usage, chat_usage, responses_usage])
def test_no_usage_is_zeros(shape):
    assert shape(None) == shape(Usage())
    assert all(value == 0 for value in _numbers(shape(None)))


def _numbers(node):
    if isinstance(node, dict):
        return [n for value in node.values() for n in _numbers(value)]
    return [node]


# Upstream reports from the fixtures, read as the meter reads them, and told back in each shape.
REPORTS = [
    (MESSAGES, "anthropic", document("anthropic-message-tool-use.json")),
    (MESSAGES, "anthropic", document("anthropic-message-thinking.json")),
    (MESSAGES, "anthropic", sse("anthropic-stream-text.sse")[0][1]["message"]),
    (CHAT, "openai", document("openai-chat-completion-tool-calls.json")),
    (CHAT, "deepseek", document("deepseek-chat-completion-reasoning.json")),
    (CHAT, "openai", sse("openai-chat-stream-text.sse")[-2][1]),
    (CHAT, "deepseek", sse("deepseek-chat-stream-reasoning.sse")[-2][1]),
]


@pytest.mark.parametrize("route, dialect, report", REPORTS, ids=lambda v: v if isinstance(v, str) else "")
def test_what_the_client_reads_back_is_what_it_was_charged(route, dialect, report):
    charged = classes(route, report["usage"], dialect, report)
    assert charged is not None and charged.input_side + charged.output_side > 0
    # read back with the client's own API's rules (the openai dialect for OpenAI's shapes)
    as_chat = read(CHAT, chat_usage(charged), "openai")
    as_responses = read(RESPONSES, responses_usage(charged), "openai")
    as_messages = read(MESSAGES, anthropic_usage(charged), "anthropic")
    for told in (as_chat, as_responses, as_messages):
        assert (told.input_side, told.output_side) == (charged.input_side, charged.output_side)
        assert told.cache_read == charged.cache_read
    # Anthropic's shape keeps cache writes apart, with their retention; reasoning it folds into output
    assert (as_messages.cache_write_5m, as_messages.cache_write_1h) == (charged.cache_write_5m, charged.cache_write_1h)
    assert as_messages.output == charged.output + charged.reasoning + charged.output_audio
    # OpenAI's shapes keep reasoning apart
    assert as_chat.reasoning == as_responses.reasoning == charged.reasoning


def test_the_fixture_numbers():
    tool_use = classes(MESSAGES, document("anthropic-message-tool-use.json")["usage"], "anthropic")
    assert (tool_use.input, tool_use.cache_read, tool_use.cache_write_5m, tool_use.cache_write_1h, tool_use.output) == (
        2095, 8000, 51, 2000, 503)
    completion = document("openai-chat-completion-tool-calls.json")
    openai = classes(CHAT, completion["usage"], "openai", completion)
    assert (openai.input, openai.cache_read, openai.output, openai.reasoning) == (93, 1024, 206, 640)
    deepseek = classes(CHAT, document("deepseek-chat-completion-reasoning.json")["usage"], "deepseek")
    assert (deepseek.input, deepseek.cache_read, deepseek.output, deepseek.reasoning) == (16, 1024, 32, 340)


def test_unreadable_usage_is_none():
    assert classes(CHAT, {"prompt_tokens": -1}, "openai") is None
    assert classes(CHAT, "lots", "openai") is None
    assert classes(MESSAGES, {"input_tokens": "many"}, "anthropic") is None
