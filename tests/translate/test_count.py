"""count_tokens for a model on an OpenAI upstream: the documented local estimate (proxy/translate/count.py)."""
import json

import pytest

from proxy.translate import count
from proxy.translate.count import IMAGE_TOKENS, PER_MESSAGE, PER_TOOL, estimate, text_tokens
from tests.translate.streams import document


@pytest.mark.parametrize("text, tokens", [
    ("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("hello world!", 3),
    ("你好", 2), ("こんにちは", 5), ("カタカナ", 4), ("안녕하세요", 5), ("ＡＢＣ", 3),  # one each, fullwidth too
    ("你好, world", 2 + 2),             # 2 wide; ", world" is 7 others: 2 tokens
    ("é" * 8, 2), ("🙂🙂🙂🙂", 1),       # anything else: four characters a token
])
def test_text(text, tokens):
    assert text_tokens(text) == tokens


def message(*content) -> dict:
    return {"role": "user", "content": list(content)}


def test_messages_system_and_framing():
    body = {"system": "Be brief.", "messages": [{"role": "user", "content": "Hello, Claude"},
                                                {"role": "assistant", "content": "Hi!"}]}
    # "Be brief." 9 chars: 3; "Hello, Claude" 13: 4; "Hi!": 1; "user"/"assistant" roles: 1 + 3; two messages' framing
    assert estimate(body) == 3 + 4 + 1 + 1 + 3 + 2 * PER_MESSAGE


def test_blocks_skip_what_is_not_text():
    cached = {"type": "text", "text": "abcd", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    call = {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get", "input": {"q": "abcdefgh"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "1234"}
    thought = {"type": "thinking", "thinking": "abcd", "signature": "EqQBCgIYAhIM" * 20}
    body = {"messages": [message(cached, thought), {"role": "assistant", "content": [call]}, message(result)]}
    # texts: abcd 1 + thinking abcd 1, "get" 1 + "abcdefgh" 2, "1234" 1; roles user 1, assistant 3, user 1
    assert estimate(body) == 1 + 1 + 1 + 2 + 1 + (1 + 3 + 1) + 3 * PER_MESSAGE


def test_images_and_documents():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}
    by_url = {"type": "image", "source": {"type": "url", "url": "https://example.com/" + "x" * 400}}
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "A" * 4000}}
    plain = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "abcdefgh"}}
    assert estimate({"messages": [message(image)]}) == IMAGE_TOKENS + 1 + PER_MESSAGE
    assert estimate({"messages": [message(by_url)]}) == IMAGE_TOKENS + 1 + PER_MESSAGE
    # 4,000 base64 characters are 3,000 bytes; four bytes a token
    assert estimate({"messages": [message(pdf)]}) == 750 + 1 + PER_MESSAGE
    assert estimate({"messages": [message(plain)]}) == 2 + 1 + PER_MESSAGE


def test_tools_count_their_definition_and_framing():
    tool = {"name": "get_weather", "description": "Get the weather",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}
    without = estimate({"messages": [{"role": "user", "content": "hi"}]})
    with_tool = estimate({"messages": [{"role": "user", "content": "hi"}], "tools": [tool]})
    assert with_tool - without == PER_TOOL + text_tokens(json.dumps(tool, ensure_ascii=False))


def test_at_least_one_and_odd_bodies():
    assert estimate({"messages": []}) == 1
    assert estimate({"messages": "hi", "tools": {"a": 1}}) == 1
    assert estimate({"messages": [None, 5, {"role": "user", "content": None}]}) == 3 * PER_MESSAGE + 1


def test_claude_codes_request_is_estimated_in_proportion():
    recorded = document("claude-code-request.json")
    estimated = estimate(recorded)
    characters = len(json.dumps([recorded["system"], recorded["messages"], recorded["tools"]]))
    assert characters // 6 < estimated < characters // 3
    assert count.HEADER == ("X-Token-Count", "estimated")
