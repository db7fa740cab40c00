"""Claude Code (`claude -p`) through the gateway, on models of OpenAI-protocol upstreams and of an Anthropic one.

On gpt-test (OpenAI) and deepseek-test (DeepSeek, which thinks aloud in `reasoning_content`) the
gateway translates Claude Code's Messages calls (70 KB of system prompt and tools, beta headers,
?beta=true, adaptive thinking, system messages inside `messages`) into chat completions, and the
streamed chunks back into Messages events; on claude-test it passes them through. Either way the
CLI prints the model's answer, runs the Bash tool the model asks for (its arguments streamed in
pieces) and sends the output back, and each call is charged exactly what the upstream's reported
usage costs at the model's price, which is also what Claude Code is told it used.
"""
import json

import pytest

from portal.pricing import Usage
from tests.clis.conftest import DEEPSEEK, THOUGHT, check_charges, scripted, unavailable
from tests.fake_upstream import ToolCall
from tests.proxy.conftest import CLAUDE, GPT

pytestmark = [pytest.mark.slow, pytest.mark.skipif(unavailable("claude") is not None,
                                                   reason=unavailable("claude") or "")]

CHAT = "/v1/chat/completions"
# The public model, its price, the path the upstream is called on, and the upstream's usage dialect.
# Passed through, a call keeps Claude Code's ?beta=true (and its anthropic-beta header).
MODELS = {"openai": ("gpt-test", GPT, CHAT, "openai"),
          "deepseek": ("deepseek-test", DEEPSEEK, CHAT, "deepseek"),
          "anthropic": ("claude-test", CLAUDE, "/v1/messages?beta=true", "anthropic")}
FIRST = Usage(input=2100, cache_read=18_000, output=23)
SECOND = Usage(input=150, cache_read=20_000, output=9)
def upstream_request(received, path: str) -> dict:
    """What the upstream got; a translated call carries none of Claude Code's Anthropic extras."""
    assert received.path == path
    doc = received.json
    assert doc["stream"] is True  # the stream worked: Claude Code fell back to a complete call on none
    if path == CHAT:
        assert "anthropic-beta" not in received.headers and "anthropic-version" not in received.headers
        assert doc["stream_options"] == {"include_usage": True}  # else a stream reports no usage
    else:
        assert "claude-code-20250219" in received.headers["anthropic-beta"]
    return doc


@pytest.mark.parametrize("upstream", ["openai", "anthropic"])
def test_a_text_answer(claude, gateway, key, fake, upstream):
    model, price, path, dialect = MODELS[upstream]
    fake.next(text="The gateway answers Claude Code.", **scripted(FIRST, dialect))
    assert claude(model, "say hi").stdout == "The gateway answers Claude Code.\n"
    [received] = fake.received
    doc = upstream_request(received, path)
    assert doc["model"] == model.replace("-test", "-upstream")
    if path == CHAT:
        assert doc["messages"][0]["role"] == "system" and "Claude Code" in doc["messages"][0]["content"]
        assert "say hi" in json.dumps([m for m in doc["messages"] if m["role"] == "user"])
        assert {tool["function"]["name"] for tool in doc["tools"]} >= {"Bash", "Read", "Edit"}
    check_charges(gateway, key, price, [FIRST], "messages")


@pytest.mark.parametrize("upstream", ["openai", "deepseek", "anthropic"])
def test_a_bash_tool_round(claude, deepseek, gateway, key, fake, upstream):
    model, price, path, dialect = MODELS[upstream]
    thought = None if upstream == "openai" else THOUGHT  # OpenAI's chat API shows no reasoning
    fake.next(text="", tool_calls=[ToolCall("Bash", {"command": "echo hello-from-tool",
                                                     "description": "Print a marker"}, id="call_bash1")],
              fragment=5, thinking=thought, **scripted(FIRST, dialect))  # arguments in 5-character pieces
    fake.next(text="The tool said hello.", **scripted(SECOND, dialect))
    out = claude(model, "run the marker command", "--allowedTools", "Bash", "--output-format", "stream-json",
                 "--verbose").stdout
    lines = [json.loads(line) for line in out.splitlines()]
    said = [block for line in lines if line["type"] == "assistant" for block in line["message"]["content"]]
    assert [block["type"] for block in said] == ["thinking"] * bool(thought) + ["tool_use", "text"]
    assert said[-2]["input"] == {"command": "echo hello-from-tool", "description": "Print a marker"}
    if thought:
        assert said[0]["thinking"] == THOUGHT
    [ran] = [line["tool_use_result"] for line in lines if line["type"] == "user"]
    assert (ran["stdout"], ran["stderr"]) == ("hello-from-tool", "")
    result = lines[-1]
    assert (result["type"], result["subtype"], result["result"], result["num_turns"]) == (
        "result", "success", "The tool said hello.", 2)
    # What Claude Code was told it used (its cost figure is its own guess from Anthropic's prices).
    assert (result["usage"]["input_tokens"], result["usage"]["cache_read_input_tokens"],
            result["usage"]["output_tokens"]) == (FIRST.input + SECOND.input, FIRST.cache_read + SECOND.cache_read,
                                                  FIRST.output + SECOND.output)

    first, second = fake.received
    upstream_request(first, path)
    doc = upstream_request(second, path)
    call, answer = doc["messages"][-2:]
    if path == CHAT:
        [tool_call] = call["tool_calls"]
        assert (call["role"], tool_call["id"], tool_call["function"]["name"]) == ("assistant", "call_bash1", "Bash")
        assert json.loads(tool_call["function"]["arguments"])["command"] == "echo hello-from-tool"
        # DeepSeek's thinking mode refuses a tool-call turn sent back without its reasoning.
        assert call.get("reasoning_content") == thought
        assert (answer["role"], answer["tool_call_id"], answer["content"]) == ("tool", "call_bash1",
                                                                                "hello-from-tool")
    else:
        tool_use = call["content"][-1]  # after the thinking block, when Claude Code keeps it (see below)
        assert (tool_use["type"], tool_use["id"], tool_use["input"]["command"]) == (
            "tool_use", "call_bash1", "echo hello-from-tool")
        [tool_result] = [block for block in answer["content"] if block["type"] == "tool_result"]
        assert (tool_result["tool_use_id"], tool_result["content"]) == ("call_bash1", "hello-from-tool")
    check_charges(gateway, key, price, [FIRST, SECOND], "messages")


# Rules of real upstreams that the fake does not enforce, checked here on what it received.

@pytest.mark.one_backend
def test_thinking_stays_in_the_history_of_a_renamed_model(claude, fake):
    """Claude Code sends back the thinking that came with a tool call only when the answer names the model it
    asked for: claude-test is served as claude-upstream."""
    fake.next(text="", tool_calls=[ToolCall("Bash", {"command": "echo hello-from-tool"}, id="call_bash1")],
              thinking=THOUGHT, dialect="anthropic")
    fake.next(text="The tool said hello.", dialect="anthropic")
    assert claude("claude-test", "run the marker command", "--allowedTools", "Bash").stdout == "The tool said hello.\n"
    call = fake.received[1].json["messages"][-2]
    assert [block["type"] for block in call["content"]] == ["thinking", "tool_use"]
    assert call["content"][0]["signature"] == "EqQBCkYIBxgCKkBfake+signature=="
