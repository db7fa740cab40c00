"""What reaches the upstream: only allow-listed headers, the upstream's own credential, the body as sent."""
import json

import pytest
import requests

from tests.fake_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.proxy.conftest import records


def post(gateway, path, body, headers=None, raw=None):
    return requests.post(f"{gateway}{path}", data=raw if raw is not None else json.dumps(body),
                         headers={"content-type": "application/json", **(headers or {})}, timeout=10)


HOSTILE = {
    "Cookie": "session=portal-session-cookie",
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Host": "evil.example",
    "Forwarded": "for=203.0.113.9",
    "X-Real-IP": "203.0.113.9",
    "Connection": "keep-alive, X-Secret-Hop",
    "X-Secret-Hop": "hop-by-hop",
    "Proxy-Authorization": "Basic c2VjcmV0",
    "OpenAI-Organization": "org-client",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "prompt-caching-2024-07-31",
    "openai-beta": "assistants=v2",
}


@pytest.mark.parametrize("path, model, key_header", [
    ("/v1/chat/completions", "gpt-test", "authorization"),
    ("/v1/messages", "claude-test", "x-api-key"),
])
def test_only_allow_listed_headers_and_the_upstream_credential(gateway, fake, key, path, model, key_header):
    body = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    response = post(gateway, path, body, {"Authorization": f"Bearer {key}", **HOSTILE})
    assert response.status_code == 200, response.text
    received = fake.received[-1]
    sent = json.dumps(received.headers)
    assert key not in sent and key[-8:] not in sent
    for leaked in ("portal-session-cookie", "203.0.113.9", "evil.example", "hop-by-hop", "c2VjcmV0", "org-client"):
        assert leaked not in sent, leaked
    allowed = {"host", "content-type", "content-length", "accept", "accept-encoding", "user-agent",
               "anthropic-version", "anthropic-beta", "openai-beta", "connection", key_header}
    assert set(received.headers) <= allowed, set(received.headers) - allowed
    if key_header == "authorization":
        assert received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    else:
        assert received.headers["x-api-key"] == ANTHROPIC_KEY
        assert received.headers["anthropic-beta"] == "prompt-caching-2024-07-31"


def test_body_goes_upstream_byte_for_byte_when_nothing_needs_changing(app, gateway, fake, key):
    from portal import catalog
    from portal.database import atomic
    from tests.proxy.conftest import CLAUDE
    with atomic():
        catalog.set_model("claude-upstream", "fake-anthropic", CLAUDE, max_output_tokens=8192)
    raw = ('{"model":  "claude-upstream", "max_tokens": 32000, "stream": false,\n "metadata": {"user_id": "u1"},'
           ' "messages": [{"role": "user", "content": "caf\\u00e9 ☕"}], "temperature": 0.70}').encode()
    raw = raw.replace(b"32000", b"8000")
    response = post(gateway, "/v1/messages", None, {"x-api-key": key}, raw=raw)
    assert response.status_code == 200, response.text
    assert fake.received[-1].body == raw


def test_model_renamed_and_output_capped(gateway, fake, key):
    body = {"model": "claude-test", "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "t", "input_schema": {"type": "object"}}], "thinking": {"type": "enabled",
                                                                                      "budget_tokens": 1024}}
    response = post(gateway, "/v1/messages", body, {"x-api-key": key})
    assert response.status_code == 200
    sent = fake.received[-1].json
    assert sent == {**body, "model": "claude-upstream", "max_tokens": 8192}
    [record] = records()
    assert record.hold_amount > 0


def test_chat_without_limit_gets_the_model_max(gateway, fake, key):
    post(gateway, "/v1/chat/completions", {"model": "gpt-test", "messages": []}, {"Authorization": f"Bearer {key}"})
    assert fake.received[-1].json["max_completion_tokens"] == 4096


def test_claude_code_sized_request(gateway, fake, key):
    """70+ KB body with tools, thinking, beta headers, max_tokens 32000, streaming."""
    fake.next(input=18_000, output=40, cache_read=50_000, cache_write=2_000)
    tools = [{"name": f"tool_{i}", "description": "x" * 600,
              "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}} for i in range(100)]
    body = {"model": "claude-test", "max_tokens": 32000, "stream": True, "tools": tools,
            "thinking": {"type": "enabled", "budget_tokens": 4000},
            "system": [{"type": "text", "text": "You are Claude Code." * 200, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "fix the bug"}]}
    raw = json.dumps(body).encode()
    assert len(raw) > 70_000
    response = requests.post(f"{gateway}/v1/messages?beta=true", data=raw, stream=True, timeout=10,
                             headers={"x-api-key": key, "content-type": "application/json",
                                      "anthropic-version": "2023-06-01",
                                      "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"})
    events = [line for line in response.iter_lines() if line.startswith(b"event:")]
    assert events[0] == b"event: message_start" and events[-1] == b"event: message_stop"
    sent = fake.received[-1].json
    assert sent["max_tokens"] == 8192 and len(sent["tools"]) == 100
    [record] = records()
    assert (record.status, record.cache_read_tokens, record.streamed) == ("ok", 50_000, True)
