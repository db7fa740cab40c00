import pytest

from portal.pricing import Usage
from proxy import holds, metering
from proxy.metering import CHAT, EMBEDDINGS, MESSAGES, RESPONSES, StreamMeter, UsageRejected
from proxy.sse import Event, Splitter, parse


@pytest.mark.parametrize("route, usage, expected", [
    (CHAT, {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 40}},
     Usage(input=60, cache_read=40, output=7)),
    (CHAT, {"prompt_tokens": 0, "completion_tokens": 0}, Usage()),
    (RESPONSES, {"input_tokens": 10, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 10}},
     Usage(input=0, cache_read=10, output=3)),
    (EMBEDDINGS, {"prompt_tokens": 9, "total_tokens": 9}, Usage(input=9)),
    (MESSAGES, {"input_tokens": 5, "output_tokens": 6, "cache_read_input_tokens": 7,
                "cache_creation_input_tokens": 8}, Usage(input=5, output=6, cache_read=7, cache_write_5m=8)),
    (MESSAGES, {"input_tokens": 5, "output_tokens": 6, "cache_read_input_tokens": None}, Usage(input=5, output=6)),
])
def test_usage_from_body(route, usage, expected):
    assert metering.usage_from_body(route, {"usage": usage}) == expected


@pytest.mark.parametrize("route, usage", [
    (CHAT, {"prompt_tokens": -1, "completion_tokens": 0}),
    (CHAT, {"prompt_tokens": 10, "completion_tokens": 1.5}),
    (CHAT, {"prompt_tokens": 10, "completion_tokens": True}),
    (CHAT, {"prompt_tokens": 10, "completion_tokens": "5"}),
    (CHAT, {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}}),
    (MESSAGES, {"input_tokens": 50_000_001}),
])
def test_impossible_usage_is_rejected(route, usage):
    with pytest.raises(UsageRejected):
        metering.usage_from_body(route, {"usage": usage})


@pytest.mark.parametrize("body", [None, [], {}, {"usage": None}, {"usage": "lots"}])
def test_missing_usage_is_none(body):
    assert metering.usage_from_body(CHAT, body) is None


def test_estimates():
    assert holds.hold_input_tokens(101) == 51
    assert metering.estimated_input_tokens(101) == 26
    document = {"choices": [{"message": {"content": "12345678", "tool_calls": [{"function": {"arguments": "{}"}}]}}],
                "usage": {"content": "not output"}}
    assert metering.estimated_output_tokens(document) == 3  # 10 characters


def test_stream_meter_anthropic_keeps_input_from_message_start():
    meter = StreamMeter(MESSAGES)
    meter.feed(Event("message_start", '{"message": {"usage": {"input_tokens": 30, "cache_read_input_tokens": 4,'
                                       ' "output_tokens": 1}}}'))
    meter.feed(Event("content_block_delta", '{"delta": {"type": "text_delta", "text": "abcdefghij"}}'))
    assert meter.charge(1000) == (Usage(input=30, cache_read=4, output=3), True)
    meter.feed(Event("message_delta", '{"usage": {"output_tokens": 12}}'))
    meter.feed(Event("message_stop", '{"type": "message_stop"}'))
    assert meter.finished and meter.charge(1000) == (Usage(input=30, cache_read=4, output=12), False)


def test_stream_meter_flags_the_openai_usage_chunk():
    meter = StreamMeter(CHAT)
    assert meter.feed(Event(None, '{"choices": [{"delta": {"content": "hi"}}]}')) is False
    assert meter.feed(Event(None, '{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}')) is True
    assert meter.feed(Event(None, "[DONE]")) is False and meter.finished
    assert meter.charge(0) == (Usage(input=3, output=1), False)


def test_splitter_returns_whole_events_byte_for_byte():
    splitter = Splitter()
    assert splitter.feed(b"event: a\ndata: 1") == []
    assert splitter.feed(b"\n\nevent: b\r\ndata: 2\r\n\r\ndata: 3\n\nda") == [
        b"event: a\ndata: 1\n\n", b"event: b\r\ndata: 2\r\n\r\n", b"data: 3\n\n"]
    assert splitter.rest() == b"da"
    assert parse(b"event: b\r\ndata: {\"x\":\r\ndata: 1}\r\n\r\n") == Event("b", '{"x":\n1}')
