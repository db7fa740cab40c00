"""count_tokens for a model whose upstream has no such endpoint: a local estimate. Pure.

OpenAI-protocol upstreams cannot count a Messages request, so the gateway estimates it, and the
answer says so ("estimated": true, and the X-Token-Count header): Chinese, Japanese and Korean
characters one token each, other text four characters a token, an image 1,600 tokens (Anthropic's
figure for a full-size image), a document's base64 data three bytes of it per token, and a few
tokens per message and per tool for their framing (docs/translation.md).
"""
import json
from typing import Any

CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1600
PER_MESSAGE = 4
PER_TOOL = 8
HEADER = ("X-Token-Count", "estimated")
_SKIP = ("type", "cache_control", "media_type", "id", "tool_use_id", "signature")


def _wide(char: str) -> bool:
    code = ord(char)
    return (0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF
            or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF)


def text_tokens(text: str) -> int:
    wide = sum(1 for char in text if _wide(char))
    return wide + -(-(len(text) - wide) // CHARS_PER_TOKEN)


def _tokens(node: Any, key: str = "") -> int:
    if key in _SKIP:  # framing the model never reads as text (cache_control's ttl, ids, signatures)
        return 0
    if isinstance(node, str):
        return text_tokens(node)
    if isinstance(node, list):
        return sum(_tokens(item, key) for item in node)
    if not isinstance(node, dict):
        return 0
    if node.get("type") == "image":
        return IMAGE_TOKENS
    source = node.get("source")
    if node.get("type") == "document" and isinstance(source, dict) and source.get("type") == "base64":
        return -(-len(str(source.get("data", ""))) * 3 // 4 // CHARS_PER_TOKEN)
    return sum(_tokens(value, name) for name, value in node.items())


def estimate(document: dict) -> int:
    """Input tokens of a Messages (count_tokens) request, estimated; at least 1."""
    messages = document.get("messages") if isinstance(document.get("messages"), list) else []
    tools = document.get("tools") if isinstance(document.get("tools"), list) else []
    total = _tokens(document.get("system")) + _tokens(messages) + PER_MESSAGE * len(messages)
    total += sum(PER_TOOL + text_tokens(json.dumps(tool, ensure_ascii=False)) for tool in tools)
    return max(total, 1)
