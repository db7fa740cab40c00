"""The Codex CLI (`codex exec`, a custom provider at the gateway) on models whose upstreams have no Responses API.

Codex speaks only the Responses API. On deepseek-test (an OpenAI-compatible upstream of DeepSeek's
dialect, chat completions only) the gateway translates its calls to chat completions and the
streamed chunks back into Responses events; on claude-test (an Anthropic upstream) it chains two
translations, Responses to chat to Messages. Either way Codex prints the model's answer, runs the
exec_command tool the model asks for and sends its output back, and each call is charged exactly
what the upstream's reported usage costs at the model's price.
"""
import json

import pytest

from portal.pricing import Usage
from tests.clis.conftest import DEEPSEEK, THOUGHT, check_charges, scripted, unavailable
from tests.fake_upstream import ToolCall
from tests.proxy.conftest import CLAUDE

pytestmark = [pytest.mark.slow, pytest.mark.skipif(unavailable("codex") is not None,
                                                   reason=unavailable("codex") or "")]

# The public model, its price, the path the upstream is called on, and the upstream's usage dialect.
MODELS = {"deepseek": ("deepseek-test", DEEPSEEK, "/v1/chat/completions", "deepseek"),
          "anthropic": ("claude-test", CLAUDE, "/v1/messages", "anthropic")}
FIRST = Usage(input=3100, cache_read=9_000, output=31)
SECOND = Usage(input=260, cache_read=12_000, output=8)
def upstream_request(received, path: str) -> dict:
    """What the upstream got: a streamed call in its own protocol."""
    assert received.path == path
    doc = received.json
    assert doc["stream"] is True
    assert "openai-beta" not in received.headers
    return doc


@pytest.mark.parametrize("upstream", ["deepseek", "anthropic"])
def test_a_text_answer(codex, deepseek, gateway, key, fake, upstream):
    model, price, path, dialect = MODELS[upstream]
    fake.next(text="The gateway answers Codex.", **scripted(FIRST, dialect))
    assert codex(model, "say hi").stdout == "The gateway answers Codex.\n"
    [received] = fake.received
    doc = upstream_request(received, path)
    assert doc["model"] == model.replace("-test", "-upstream")
    assert "say hi" in json.dumps(doc["messages"])
    if upstream == "deepseek":
        # Codex's instructions come as developer messages; DeepSeek takes them as system messages.
        assert doc["messages"][0]["role"] == "system" and "Codex" in json.dumps(doc["messages"][0]["content"])
        assert "exec_command" in {tool["function"]["name"] for tool in doc["tools"]}
    else:
        assert "Codex" in json.dumps(doc["system"])
        assert "exec_command" in {tool["name"] for tool in doc["tools"]}
    check_charges(gateway, key, price, [FIRST], "responses")


@pytest.mark.parametrize("upstream", ["deepseek", "anthropic"])
def test_an_exec_command_round(codex, deepseek, gateway, key, fake, upstream):
    model, price, path, dialect = MODELS[upstream]
    # The model thinks aloud first; the command's JSON arguments arrive in 5-character pieces.
    fake.next(text="", tool_calls=[ToolCall("exec_command", {"cmd": "echo hello-from-tool"}, id="call_exec1")],
              fragment=5, thinking=THOUGHT, **scripted(FIRST, dialect))
    fake.next(text="The tool said hello.", **scripted(SECOND, dialect))
    # No sandbox: the gateway is under test here, not Codex's bubblewrap (which needs user namespaces).
    lines = [json.loads(line) for line in codex(model, "run the marker command", "--sandbox", "danger-full-access",
                                                "--json").stdout.splitlines()]
    done = [line["item"] for line in lines if line["type"] == "item.completed" and line["item"]["type"] != "error"]
    assert [(item["type"], item.get("aggregated_output") or item.get("text")) for item in done] == [
        ("command_execution", "hello-from-tool\n"), ("agent_message", "The tool said hello.")]
    # What Codex was told the two calls used (input counts the cached tokens in, as the Responses API does).
    assert lines[-1]["type"] == "turn.completed"
    usage = lines[-1]["usage"]
    assert (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]) == (
        FIRST.input + FIRST.cache_read + SECOND.input + SECOND.cache_read, FIRST.cache_read + SECOND.cache_read,
        FIRST.output + SECOND.output)
    first, second = fake.received
    upstream_request(first, path)
    doc = upstream_request(second, path)
    if upstream == "deepseek":
        call, result = doc["messages"][-2:]
        [tool_call] = call["tool_calls"]
        assert (call["role"], tool_call["id"], tool_call["function"]["name"]) == (
            "assistant", "call_exec1", "exec_command")
        assert json.loads(tool_call["function"]["arguments"]) == {"cmd": "echo hello-from-tool"}
        # Codex sends the reasoning item back; DeepSeek's thinking mode refuses a tool-call turn without it.
        assert call["reasoning_content"] == THOUGHT
        assert (result["role"], result["tool_call_id"]) == ("tool", "call_exec1")
        assert "hello-from-tool" in json.dumps(result["content"])
    else:
        call, result = doc["messages"][-2:]
        [tool_use] = [block for block in call["content"] if block["type"] == "tool_use"]
        assert (tool_use["id"], tool_use["name"], tool_use["input"]) == (
            "call_exec1", "exec_command", {"cmd": "echo hello-from-tool"})
        [tool_result] = [block for block in result["content"] if block["type"] == "tool_result"]
        assert tool_result["tool_use_id"] == "call_exec1" and "hello-from-tool" in json.dumps(tool_result["content"])
    check_charges(gateway, key, price, [FIRST, SECOND], "responses")


# Rules of real upstreams that the fake does not enforce, checked here on what it received.

@pytest.mark.one_backend
def test_an_anthropic_tool_round_with_reasoning_effort(codex, fake):
    """Codex asks for reasoning (model_reasoning_effort): chained to Anthropic, the first call thinks."""
    fake.next(text="", tool_calls=[ToolCall("exec_command", {"cmd": "echo hello-from-tool"}, id="call_exec1")],
              thinking=THOUGHT, dialect="anthropic")
    fake.next(text="The tool said hello.", dialect="anthropic")
    codex("claude-test", "run the marker command", "--sandbox", "danger-full-access",
          "-c", 'model_reasoning_effort="high"')
    first, second = (received.json for received in fake.received)
    assert first["thinking"]["type"] == "enabled"
    call = second["messages"][-2]
    assert "thinking" not in second or call["content"][0]["type"] in ("thinking", "redacted_thinking")
