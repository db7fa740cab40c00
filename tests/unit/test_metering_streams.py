"""StreamMeter event by event: which figures are charged, and the estimates when a stream has none."""
import json

import pytest

from portal.pricing import Usage
from proxy import holds, metering
from proxy.metering import CHAT, MESSAGES, RESPONSES, StreamMeter, UsageRejected
from proxy.sse import Event


def event(name, data) -> Event:
    return Event(name, data if isinstance(data, str) else json.dumps(data))


def fed(route, *events) -> StreamMeter:
    meter = StreamMeter(route)
    for e in events:
        meter.feed(e)
    return meter


# --- OpenAI Responses ------------------------------------------------------------------------------

def responses_end(kind: str, usage=None, status=None, named=True) -> Event:
    response = {"id": "resp_1", "object": "response", "status": status or kind.split(".")[1]}
    if usage is not None:
        response["usage"] = usage
    return event(kind if named else None, {"type": kind, "response": response})


RESPONSES_USAGE = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 20}, "output_tokens": 64,
                   "output_tokens_details": {"reasoning_tokens": 50}, "total_tokens": 184}


@pytest.mark.parametrize("kind", ["response.completed", "response.incomplete", "response.failed"])
@pytest.mark.parametrize("named", [True, False], ids=["event-name", "type-field"])
def test_a_responses_stream_is_charged_the_usage_of_its_last_event(kind, named):
    """`response.incomplete` is what reaching max_output_tokens produces: its usage is what was used."""
    meter = fed(RESPONSES,
                event("response.created", {"type": "response.created", "response": {"status": "in_progress"}}),
                event("response.output_text.delta", {"type": "response.output_text.delta", "delta": "a" * 400}),
                responses_end(kind, RESPONSES_USAGE, named=named))
    assert meter.finished
    assert meter.charge(10_000) == (Usage(input=100, cache_read=20, output=14, reasoning=50), False)


@pytest.mark.parametrize("kind", ["response.incomplete", "response.failed"])
def test_a_responses_stream_ending_without_usage_is_estimated(kind):
    meter = fed(RESPONSES, event("response.output_text.delta", {"delta": "abcdefgh"}), responses_end(kind))
    assert meter.finished
    assert meter.charge(400) == (Usage(input=100, output=2), True)


def test_a_responses_stream_is_not_finished_before_its_last_event():
    meter = fed(RESPONSES, event("response.created", {"response": {"usage": RESPONSES_USAGE}}),
                event("response.in_progress", {"response": {"usage": RESPONSES_USAGE}}),
                event("response.output_text.done", {"text": "abc"}))
    assert not meter.finished and meter.usage is None


@pytest.mark.parametrize("kind", ["response.output_text.delta", "response.reasoning_text.delta",
                                  "response.reasoning_summary_text.delta", "response.refusal.delta",
                                  "response.function_call_arguments.delta"])
def test_every_kind_of_responses_delta_is_output(kind):
    meter = fed(RESPONSES, event(kind, {"type": kind, "delta": "abcdefghi"}))
    assert (meter.delta_events, meter.delta_chars, meter.relayed_output) == (1, 9, True)
    assert meter.charge(0) == (Usage(output=3), True)


def test_a_responses_delta_that_is_not_text_is_not_output():
    meter = fed(RESPONSES, event("response.audio.delta", {"delta": {"bytes": "xyz"}}),
                event("response.output_text.delta", {"delta": ""}))
    assert (meter.delta_events, meter.relayed_output) == (0, False)


# --- Anthropic messages --------------------------------------------------------------------------

def message_start(**usage) -> Event:
    return event("message_start", {"type": "message_start", "message": {"usage": usage}})


def message_delta(**usage) -> Event:
    return event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage})


def test_message_delta_cumulative_input_figures_override_message_start():
    """message_delta's counts are cumulative: when it reports input classes, they are the final ones."""
    meter = fed(MESSAGES,
                message_start(input_tokens=10, cache_read_input_tokens=3, cache_creation_input_tokens=4,
                              output_tokens=1),
                message_delta(input_tokens=2_500, cache_read_input_tokens=300, cache_creation_input_tokens=40,
                              output_tokens=77),
                event("message_stop", {"type": "message_stop"}))
    assert meter.charge(0) == (Usage(input=2_500, cache_read=300, cache_write_5m=40, output=77), False)


@pytest.mark.parametrize("reported, expected", [
    ({"input_tokens": 2_500}, Usage(input=2_500, cache_read=3, cache_write_5m=4, output=77)),
    ({"cache_read_input_tokens": 300}, Usage(input=10, cache_read=300, cache_write_5m=4, output=77)),
    ({"cache_creation_input_tokens": 40}, Usage(input=10, cache_read=3, cache_write_5m=40, output=77)),
    ({}, Usage(input=10, cache_read=3, cache_write_5m=4, output=77)),
])
def test_each_input_class_missing_from_message_delta_comes_from_message_start(reported, expected):
    meter = fed(MESSAGES, message_start(input_tokens=10, cache_read_input_tokens=3, cache_creation_input_tokens=4),
                message_delta(output_tokens=77, **reported))
    assert meter.charge(0) == (expected, False)


def test_message_delta_without_message_start_usage():
    meter = fed(MESSAGES, message_delta(output_tokens=5))
    assert meter.charge(1_000) == (Usage(output=5), False)


def test_impossible_message_delta_usage_is_rejected():
    meter = fed(MESSAGES, message_start(input_tokens=10))
    with pytest.raises(UsageRejected):
        meter.feed(message_delta(input_tokens=-1, output_tokens=5))


@pytest.mark.parametrize("delta", [{"type": "text_delta", "text": "abcdefghi"},
                                   {"type": "thinking_delta", "thinking": "abcdefghi"},
                                   {"type": "input_json_delta", "partial_json": "abcdefghi"}])
def test_every_kind_of_content_block_delta_is_output(delta):
    meter = fed(MESSAGES, message_start(input_tokens=10), event("content_block_delta", {"delta": delta}))
    assert meter.charge(0) == (Usage(input=10, output=3), True)


def test_a_signature_delta_is_not_output():
    meter = fed(MESSAGES, event("content_block_delta", {"delta": {"type": "signature_delta", "signature": "x" * 80}}))
    assert not meter.relayed_output


def test_a_messages_stream_is_finished_by_message_stop_only():
    meter = fed(MESSAGES, message_start(input_tokens=1), message_delta(output_tokens=1))
    assert not meter.finished
    meter.feed(event("message_stop", {"type": "message_stop"}))
    assert meter.finished


# --- OpenAI chat ---------------------------------------------------------------------------------

def chunk(delta=None, usage=None, choices=True) -> Event:
    data = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta or {}}] if choices else []}
    if usage is not None:
        data["usage"] = usage
    return event(None, data)


@pytest.mark.parametrize("delta", [{"content": "abcdefghi"}, {"reasoning_content": "abcdefghi"},
                                   {"refusal": "abcdefghi"},
                                   {"tool_calls": [{"index": 0, "function": {"name": "abcd", "arguments": "efghi"}}]}])
def test_every_kind_of_chat_delta_is_output(delta):
    meter = fed(CHAT, chunk({"role": "assistant", "content": ""}), chunk(delta))
    assert (meter.delta_events, meter.delta_chars) == (1, 9)
    assert meter.charge(0) == (Usage(output=3), True)


def test_only_the_choice_less_usage_chunk_is_flagged():
    meter = StreamMeter(CHAT)
    usage = {"prompt_tokens": 30, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 10}}
    assert meter.feed(chunk({"content": "hi"}, usage=usage)) is False  # usage riding on a content chunk
    assert meter.feed(chunk(usage=usage, choices=False)) is True
    assert not meter.finished
    assert meter.feed(event(None, "[DONE]")) is False and meter.finished
    assert meter.charge(0) == (Usage(input=20, cache_read=10, output=4), False)


# --- the estimate when a stream reports no usage -------------------------------------------------

def test_a_stream_of_one_character_deltas_is_charged_a_token_per_delta():
    """Four characters a token would charge 100 one-character deltas as 25 tokens; each delta is at
    least one token, so they are charged as 100."""
    meter = fed(CHAT, *[chunk({"content": "x"}) for _ in range(100)], event(None, "[DONE]"))
    assert (meter.delta_events, meter.delta_chars) == (100, 100)
    assert meter.charge(40) == (Usage(input=10, output=100), True)


def test_long_deltas_are_charged_four_characters_a_token_rounded_up():
    meter = fed(MESSAGES, message_start(input_tokens=7),
                *[event("content_block_delta", {"delta": {"text": "x" * 41}}) for _ in range(2)])
    assert meter.charge(0) == (Usage(input=7, output=21), True)  # 82 characters


def test_empty_deltas_are_not_output():
    meter = fed(CHAT, chunk({"role": "assistant", "content": ""}), chunk({"content": None}), chunk({}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}))
    assert (meter.delta_events, meter.delta_chars, meter.relayed_output) == (0, 0, False)
    assert meter.charge(41) == (Usage(input=11, output=0), True)


def test_without_message_start_usage_input_is_estimated_from_the_body():
    meter = fed(MESSAGES, event("content_block_delta", {"delta": {"text": "abcd"}}))
    assert meter.charge(401) == (Usage(input=101, output=1), True)


def test_message_start_input_classes_are_kept_in_the_estimate():
    meter = fed(MESSAGES, message_start(input_tokens=5, cache_read_input_tokens=6, cache_creation_input_tokens=7))
    assert meter.charge(10_000) == (Usage(input=5, cache_read=6, cache_write_5m=7, output=0), True)


# --- reading usage -------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens", [0, 1, metering.MAX_TOKENS_PER_CLASS])
def test_usage_at_the_limits_is_believed(tokens):
    assert metering.usage_from_body(MESSAGES, {"usage": {"input_tokens": tokens}}) == Usage(input=tokens)


def test_all_input_may_be_cached():
    usage = {"prompt_tokens": 50, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 50}}
    assert metering.usage_from_body(CHAT, {"usage": usage}) == Usage(input=0, cache_read=50, output=1)


@pytest.mark.parametrize("usage", [{"input_tokens": 10, "output_tokens": metering.MAX_TOKENS_PER_CLASS + 1},
                                   {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 11}},
                                   {"input_tokens": 10, "output_tokens": -1}])
def test_impossible_responses_usage_is_rejected(usage):
    with pytest.raises(UsageRejected):
        metering.usage_from_body(RESPONSES, {"usage": usage})


def test_estimates_round_up():
    assert holds.hold_input_tokens(1) == 1 and holds.hold_input_tokens(2) == 1
    assert metering.estimated_input_tokens(1) == 1 and metering.estimated_input_tokens(8) == 2
    assert metering.estimated_output_tokens({"content": "a"}) == 1
    assert metering.estimated_output_tokens({"content": "abcde"}) == 2
    assert metering.estimated_output_tokens({"content": ""}) == 0
    assert metering.estimated_output_tokens({"content": ["abcd", "efgh"]}) == 2  # a list of text parts


def test_every_kind_of_generated_text_counts_in_a_complete_response():
    document = {"content": [{"type": "thinking", "thinking": "abcd"}, {"type": "text", "text": "abcd"},
                            {"type": "tool_use", "input": {"x": 1}}],
                "choices": [{"message": {"refusal": "abcd", "tool_calls": [{"function": {"arguments": "abcd"}}]}}],
                "id": "this id is not output", "model": "nor is the model name"}
    assert metering.estimated_output_tokens(document) == 4
