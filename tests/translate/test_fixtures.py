"""The fixtures themselves: each cites the document it follows, and each is what the official SDKs
accept from the API, so the translation tests start from real shapes."""
import json

import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from tests.translate.streams import DATA, check_anthropic, check_chat, check_responses, document, sse

ANTHROPIC_STREAMS = ["anthropic-stream-text.sse", "anthropic-stream-tool-use.sse", "anthropic-stream-thinking.sse"]
CHAT_STREAMS = ["openai-chat-stream-text.sse", "openai-chat-stream-parallel-tools.sse",
                "deepseek-chat-stream-reasoning.sse"]


@pytest.mark.parametrize("path", sorted(DATA.iterdir()), ids=lambda path: path.name)
def test_every_fixture_cites_its_source(path):
    if path.suffix == ".sse":
        first = path.read_text().splitlines()[0]
        assert first.startswith(": ") and ("https://" in first or "Recorded" in first), first
    else:
        source = json.loads(path.read_text())["_source"]
        assert "https://" in source or source.startswith("Recorded"), source


@pytest.mark.parametrize("name", ANTHROPIC_STREAMS)
def test_anthropic_streams_are_what_the_sdk_reads(name):
    message = check_anthropic(sse(name))
    assert message.stop_reason in ("end_turn", "tool_use")


def test_the_anthropic_error_stream_ends_in_an_error_event():
    check_anthropic(sse("anthropic-stream-error.sse"), error=True)


@pytest.mark.parametrize("name", CHAT_STREAMS)
def test_chat_streams_are_what_the_sdk_reads(name):
    completion = check_chat(sse(name), wants_usage=True, usage_with_finish=name.startswith("deepseek"))
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_the_responses_stream_is_what_the_sdk_reads():
    response = check_responses(sse("responses-stream-text-and-call.sse"))
    assert response.output_text == "Checking."
    assert [item.type for item in response.output] == ["message", "function_call"]


@pytest.mark.parametrize("name", ["anthropic-message-tool-use.json", "anthropic-message-thinking.json"])
def test_anthropic_messages_are_what_the_sdk_reads(name):
    Message.model_validate(document(name))


@pytest.mark.parametrize("name", ["openai-chat-completion-tool-calls.json", "deepseek-chat-completion-reasoning.json"])
def test_chat_completions_are_what_the_sdk_reads(name):
    ChatCompletion.model_validate(document(name))
