"""Usage read per provider dialect: each provider's usage object, complete and streamed, gives the
right disjoint classes; impossible figures are refused; total_tokens guards what is not itemised."""
import http.client
import json

import pytest

from portal.pricing import Usage
from proxy import metering
from proxy.dialects import DIALECTS
from proxy.metering import CHAT, EMBEDDINGS, MESSAGES, RESPONSES, StreamMeter, UsageRejected
from proxy.sse import Event, Splitter, parse
from tests.fake_upstream import FakeUpstream

OPENAI_COMPATIBLE = [d for d in DIALECTS if d != "anthropic"] + ["echo"]


def read(usage, dialect="openai", route=CHAT, **body):
    return metering.usage_from_body(route, {**body, "usage": usage}, dialect)


def guard_note(tokens: int) -> str:
    return f"total_tokens guard: +{tokens} tokens charged as reasoning"


# --- chat completions, complete, as each provider's documentation shows the usage object -----------

@pytest.mark.parametrize("dialect, usage, expected", [
    pytest.param("openai", {  # gpt-audio: audio inside prompt and completion
        "prompt_tokens": 1200, "completion_tokens": 900, "total_tokens": 2100,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 1000},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 800, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0}},
        Usage(input=200, input_audio=1000, output=100, output_audio=800), id="openai-audio"),
    pytest.param("openai", {  # o3: reasoning inside completion_tokens
        "prompt_tokens": 10_000, "completion_tokens": 20_008, "total_tokens": 30_008,
        "prompt_tokens_details": {"cached_tokens": 4_000, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 20_000, "audio_tokens": 0}},
        Usage(input=6_000, cache_read=4_000, output=8, reasoning=20_000), id="openai-reasoning"),
    pytest.param("deepseek", {
        "prompt_tokens": 120_000, "completion_tokens": 1_000, "total_tokens": 121_000,
        "prompt_cache_hit_tokens": 110_000, "prompt_cache_miss_tokens": 10_000,
        "completion_tokens_details": {"reasoning_tokens": 600}},
        Usage(input=10_000, cache_read=110_000, output=400, reasoning=600), id="deepseek-hit-miss"),
    pytest.param("deepseek", {  # newer answers carry both; the hit figure is the one DeepSeek bills
        "prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105, "prompt_cache_hit_tokens": 64,
        "prompt_cache_miss_tokens": 36, "prompt_tokens_details": {"cached_tokens": 64}},
        Usage(input=36, cache_read=64, output=5), id="deepseek-both"),
    pytest.param("deepseek", {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
                              "prompt_tokens_details": {"cached_tokens": 64}},
                 Usage(input=36, cache_read=64, output=5), id="deepseek-cached-tokens-only"),
    pytest.param("dashscope", {  # explicit cache, 5-minute writes
        "prompt_tokens": 3019, "completion_tokens": 104, "total_tokens": 3123,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_creation": {"ephemeral_5m_input_tokens": 3015},
                                  "cache_creation_input_tokens": 3015, "cache_type": "ephemeral"}},
        Usage(input=4, cache_write_5m=3015, output=104), id="dashscope-5m"),
    pytest.param("dashscope", {
        "prompt_tokens": 3100, "completion_tokens": 10, "total_tokens": 3110,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_input_tokens": 3000,
                                  "cache_creation": {"ephemeral_5m_input_tokens": 1000,
                                                     "ephemeral_1h_input_tokens": 2000}}},
        Usage(cache_read=100, cache_write_5m=1000, cache_write_1h=2000, output=10), id="dashscope-1h"),
    pytest.param("dashscope", {"prompt_tokens": 500, "completion_tokens": 1, "total_tokens": 501,
                               "prompt_tokens_details": {"cache_creation_input_tokens": 400}},
                 Usage(input=100, cache_write_5m=400, output=1), id="dashscope-no-breakdown"),
    pytest.param("moonshot", {"prompt_tokens": 30_000, "completion_tokens": 900, "total_tokens": 30_900,
                              "cached_tokens": 20_000},
                 Usage(input=10_000, cache_read=20_000, output=900), id="moonshot-top-level-cached"),
    pytest.param("moonshot", {"prompt_tokens": 30_000, "completion_tokens": 900, "total_tokens": 30_900,
                              "prompt_tokens_details": {"cached_tokens": 20_000}},
                 Usage(input=10_000, cache_read=20_000, output=900), id="moonshot-details-cached"),
    pytest.param("xai", {  # reasoning beside completion_tokens; total_tokens counts it
        "prompt_tokens": 32, "completion_tokens": 9, "total_tokens": 135,
        "prompt_tokens_details": {"text_tokens": 32, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 6},
        "completion_tokens_details": {"reasoning_tokens": 94, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
        "num_sources_used": 3},
        Usage(input=26, cache_read=6, output=9, reasoning=94, units={"search_sources": 3}), id="xai"),
    pytest.param("xai", {  # even when the reasoning would fit inside completion_tokens
        "prompt_tokens": 100, "completion_tokens": 500, "total_tokens": 700,
        "completion_tokens_details": {"reasoning_tokens": 100}, "num_sources_used": 0},
        Usage(input=100, output=500, reasoning=100), id="xai-small-reasoning"),
    pytest.param("openrouter", {
        "prompt_tokens": 12_000, "completion_tokens": 200, "total_tokens": 12_200,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 10_000, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}, "cost": 0.0465, "is_byok": False},
        Usage(input=2_000, cache_write_5m=10_000, output=200), id="openrouter-cache-write"),
    pytest.param("generic-openai", {"prompt_tokens": 1_000, "completion_tokens": 300, "total_tokens": 2_000},
                 Usage(input=1_000, output=300, reasoning=700, notes=(guard_note(700),)), id="gemini-thoughts"),
    pytest.param("echo", {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                 Usage(input=3, output=2), id="echo"),
])
def test_each_dialects_chat_usage(dialect, usage, expected):
    assert read(usage, dialect) == expected


def test_openai_reasoning_reported_beside_the_completion_is_read_as_beside_it():
    """Parts that exceed their whole mean the upstream reported reasoning outside completion_tokens."""
    usage = {"prompt_tokens": 10, "completion_tokens": 50, "total_tokens": 560,
             "completion_tokens_details": {"reasoning_tokens": 500, "audio_tokens": 20}}
    assert read(usage) == Usage(input=10, output=30, output_audio=20, reasoning=500,
                                notes=("reasoning_tokens 500 read as outside completion_tokens 50",))


@pytest.mark.parametrize("dialect", ["openai", "deepseek", "moonshot", "generic-openai"])
def test_fields_of_another_dialect_are_not_read(dialect):
    """Only OpenRouter and DashScope report cache writes: for others the same tokens stay input."""
    usage = {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101,
             "prompt_tokens_details": {"cache_write_tokens": 60, "cache_creation_input_tokens": 60}}
    assert read(usage, dialect) == Usage(input=100, output=1)


@pytest.mark.parametrize("tier", ["priority", "flex", "default"])
@pytest.mark.parametrize("route, usage", [(CHAT, {"prompt_tokens": 2, "completion_tokens": 1}),
                                          (RESPONSES, {"input_tokens": 2, "output_tokens": 1})])
def test_the_service_tier_is_the_responses_own(route, usage, tier):
    assert read(usage, route=route, service_tier=tier) == Usage(input=2, output=1, service_tier=tier)
    assert read(usage, route=route).service_tier is None


def test_embeddings_are_all_input():
    assert read({"prompt_tokens": 9, "total_tokens": 9}, route=EMBEDDINGS) == Usage(input=9)


# --- the total_tokens guard --------------------------------------------------------------------------

@pytest.mark.parametrize("dialect", OPENAI_COMPATIBLE)
def test_the_guard_charges_what_only_total_tokens_reports_as_reasoning(dialect):
    usage = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 450,
             "completion_tokens_details": {"reasoning_tokens": 20}}
    # OpenAI's 20 are inside the 50; xAI's beside them, so 280 remain unitemised there.
    output, gap = (50, 280) if dialect == "xai" else (30, 300)
    found = read(usage, dialect)
    assert (found.output, found.reasoning, found.notes) == (output, 20 + gap, (guard_note(gap),))
    assert sum(found.tokens().values()) == 450


@pytest.mark.parametrize("total", [None, 150, 149, 0])
def test_the_guard_is_silent_when_total_tokens_adds_nothing(total):
    usage = {"prompt_tokens": 100, "completion_tokens": 50, **({} if total is None else {"total_tokens": total})}
    assert read(usage) == Usage(input=100, output=50)


def test_the_guard_also_covers_responses():
    usage = {"input_tokens": 100, "output_tokens": 50, "total_tokens": 400,
             "output_tokens_details": {"reasoning_tokens": 30}}
    assert read(usage, route=RESPONSES) == Usage(input=100, output=20, reasoning=280, notes=(guard_note(250),))


def test_the_anthropic_dialect_has_no_guard():
    """Anthropic's OpenAI-compatible endpoint: total_tokens is not what it bills."""
    assert read({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 99}, "anthropic") == \
        Usage(input=10, output=5)


# --- the Responses API ------------------------------------------------------------------------------

def test_responses_reasoning_inside_output_tokens():
    usage = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 20}, "output_tokens": 64,
             "output_tokens_details": {"reasoning_tokens": 50}, "total_tokens": 184}
    assert read(usage, route=RESPONSES) == Usage(input=100, cache_read=20, output=14, reasoning=50)


def test_responses_reasoning_beside_output_tokens():
    usage = {"input_tokens": 10, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 40},
             "total_tokens": 55}
    assert read(usage, route=RESPONSES) == Usage(input=10, output=5, reasoning=40,
                                                 notes=("reasoning_tokens 40 read as outside output_tokens 5",))


def test_responses_tool_items_are_fee_units():
    output = [{"type": "web_search_call", "id": "ws_1", "status": "completed"},
              {"type": "web_search_call", "id": "ws_2", "status": "completed"},
              {"type": "file_search_call", "id": "fs_1", "status": "completed"},
              {"type": "code_interpreter_call", "id": "ci_1", "container_id": "cntr_a"},
              {"type": "code_interpreter_call", "id": "ci_2", "container_id": "cntr_a"},
              {"type": "code_interpreter_call", "id": "ci_3", "container_id": "cntr_b"},
              {"type": "web_fetch_call", "id": "wf_1"},
              {"type": "function_call", "id": "fc_1", "name": "lookup", "arguments": "{}"},
              {"type": "message", "content": [{"type": "output_text", "text": "done"}]}]
    found = read({"input_tokens": 1, "output_tokens": 1}, route=RESPONSES, output=output)
    assert found.units == {"web_search": 2, "file_search": 1, "code_container": 2, "web_fetch": 1}
    assert metering.units_from_body(RESPONSES, {"output": output}) == found.units


def test_a_code_interpreter_call_without_a_container_id_is_one_container():
    output = [{"type": "code_interpreter_call", "id": "ci_1"}, {"type": "code_interpreter_call", "id": "ci_2"}]
    assert read({"input_tokens": 1}, route=RESPONSES, output=output).units == {"code_container": 1}


# --- Anthropic messages -----------------------------------------------------------------------------

CLAUDE_USAGE = {"input_tokens": 50, "cache_creation_input_tokens": 3_000, "cache_read_input_tokens": 700,
                "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000},
                "output_tokens": 500, "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
                "service_tier": "priority"}


@pytest.mark.parametrize("dialect", ["anthropic", "openai", "deepseek"])  # the route decides the format
def test_anthropic_usage_with_its_breakdown_tools_and_tier(dialect):
    assert read(CLAUDE_USAGE, dialect, route=MESSAGES) == Usage(
        input=50, cache_read=700, cache_write_5m=1_000, cache_write_1h=2_000, output=500,
        units={"web_search": 3, "web_fetch": 1}, service_tier="priority")


@pytest.mark.parametrize("usage, writes", [
    ({"cache_creation_input_tokens": 900}, (900, 0)),
    ({"cache_creation_input_tokens": 900, "cache_creation": {"ephemeral_1h_input_tokens": 300}}, (600, 300)),
    ({"cache_creation_input_tokens": 900, "cache_creation": {"ephemeral_5m_input_tokens": 100,
                                                             "ephemeral_1h_input_tokens": 300}}, (600, 300)),
    ({"cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 300}}, (100, 300)),
])
def test_anthropic_cache_writes_split_by_duration(usage, writes):
    found = read({"input_tokens": 1, **usage}, "anthropic", route=MESSAGES)
    assert (found.cache_write_5m, found.cache_write_1h) == writes


def test_anthropic_code_execution_requests_are_containers():
    usage = {"input_tokens": 1, "output_tokens": 1, "server_tool_use": {"code_execution_requests": 2,
                                                                        "web_search_requests": 0}}
    assert read(usage, "anthropic", route=MESSAGES).units == {"code_container": 2}


# --- impossible figures -----------------------------------------------------------------------------

@pytest.mark.parametrize("dialect, route, usage", [
    ("openai", CHAT, {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 6, "audio_tokens": 5}}),
    ("openai", CHAT, {"prompt_tokens": 10, "completion_tokens": 5,
                      "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 6}}),
    ("openai", CHAT, {"prompt_tokens": 10, "total_tokens": -1}),
    ("openai", CHAT, {"prompt_tokens": 10, "total_tokens": metering.MAX_TOKENS_PER_CLASS + 1}),
    ("openai", CHAT, {"prompt_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 2.5}}),
    ("deepseek", CHAT, {"prompt_tokens": 10, "prompt_cache_hit_tokens": 11, "prompt_cache_miss_tokens": 0}),
    ("deepseek", CHAT, {"prompt_tokens": 10, "prompt_cache_hit_tokens": "3"}),
    ("moonshot", CHAT, {"prompt_tokens": 10, "cached_tokens": 11}),
    ("openrouter", CHAT, {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 5,
                                                                          "cache_write_tokens": 6}}),
    ("dashscope", CHAT, {"prompt_tokens": 10, "prompt_tokens_details": {"cache_creation_input_tokens": 11}}),
    ("dashscope", CHAT, {"prompt_tokens": 100, "prompt_tokens_details": {
        "cache_creation_input_tokens": 10, "cache_creation": {"ephemeral_5m_input_tokens": 10,
                                                              "ephemeral_1h_input_tokens": 1}}}),
    ("xai", CHAT, {"prompt_tokens": 10, "completion_tokens": 5, "completion_tokens_details": {"audio_tokens": 6}}),
    ("xai", CHAT, {"prompt_tokens": 10, "num_sources_used": -1}),
    ("openai", RESPONSES, {"input_tokens": 10, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": -1}}),
    ("anthropic", MESSAGES, {"input_tokens": 1, "cache_creation_input_tokens": 100,
                             "cache_creation": {"ephemeral_5m_input_tokens": 80, "ephemeral_1h_input_tokens": 30}}),
    ("anthropic", MESSAGES, {"input_tokens": 1, "server_tool_use": {"web_search_requests": True}}),
    ("anthropic", MESSAGES, {"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 10 ** 9}}),
])
def test_impossible_figures_are_rejected(dialect, route, usage):
    with pytest.raises(UsageRejected):
        read(usage, dialect, route=route)


def test_an_unknown_dialect_is_a_configuration_error():
    with pytest.raises(ValueError, match="unknown upstream dialect 'gemini'"):
        read({"prompt_tokens": 1}, "gemini")
    with pytest.raises(ValueError, match="expected one of openai, anthropic"):
        StreamMeter(CHAT, "gemini")


# --- streams ----------------------------------------------------------------------------------------

def chunk(*, choices=(), usage=None, tier=None) -> Event:
    data = {"object": "chat.completion.chunk", "choices": list(choices)}
    if tier:
        data["service_tier"] = tier
    if usage is not None:
        data["usage"] = usage
    return Event(None, json.dumps(data))


def test_moonshot_streams_its_usage_inside_the_last_choice():
    meter = StreamMeter(CHAT, "moonshot")
    assert meter.feed(chunk(choices=[{"index": 0, "delta": {"content": "hi"}}])) is False
    last = {"index": 0, "delta": {}, "finish_reason": "stop",
            "usage": {"prompt_tokens": 30_000, "completion_tokens": 900, "total_tokens": 30_900,
                      "cached_tokens": 10_000}}
    assert meter.feed(chunk(choices=[last])) is False  # riding on a choice: never stripped
    meter.feed(Event(None, "[DONE]"))
    assert meter.charge(400) == (Usage(input=20_000, cache_read=10_000, output=900), False)


def test_usage_inside_a_choice_is_read_for_any_dialect_and_the_last_report_wins():
    meter = StreamMeter(CHAT, "openai")
    meter.feed(chunk(choices=[{"index": 0, "delta": {}, "usage": {"prompt_tokens": 5, "completion_tokens": 1}}]))
    assert meter.usage == Usage(input=5, output=1)
    assert meter.feed(chunk(usage={"prompt_tokens": 7, "completion_tokens": 3})) is True
    assert meter.charge(0) == (Usage(input=7, output=3), False)


def test_a_stream_reports_its_service_tier_in_its_chunks():
    meter = StreamMeter(CHAT)
    meter.feed(chunk(choices=[{"index": 0, "delta": {"content": "abcd"}}], tier="priority"))
    assert meter.charge(40) == (Usage(input=10, output=1, service_tier="priority"), True)
    meter.feed(chunk(usage={"prompt_tokens": 20_000, "completion_tokens": 5_000}))  # no tier on this one
    assert meter.charge(40) == (Usage(input=20_000, output=5_000, service_tier="priority"), False)


def test_a_service_tier_reported_after_the_usage_still_applies():
    meter = StreamMeter(CHAT)
    meter.feed(chunk(usage={"prompt_tokens": 2, "completion_tokens": 1}))
    meter.feed(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}], tier="flex"))
    assert meter.charge(0) == (Usage(input=2, output=1, service_tier="flex"), False)


def test_a_streamed_chat_usage_is_guarded_too():
    meter = StreamMeter(CHAT, "generic-openai")
    meter.feed(chunk(usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 40}))
    assert meter.charge(0) == (Usage(input=10, output=5, reasoning=25, notes=(guard_note(25),)), False)


def test_xai_streamed_sources_are_units():
    meter = StreamMeter(CHAT, "xai")
    meter.feed(chunk(usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 35, "num_sources_used": 4,
                            "completion_tokens_details": {"reasoning_tokens": 20}}))
    assert meter.charge(0) == (Usage(input=10, output=5, reasoning=20, units={"search_sources": 4}), False)


def responses_event(kind: str, **data) -> Event:
    return Event(kind, json.dumps({"type": kind, **data}))


SEARCH = {"type": "web_search_call", "id": "ws_1", "status": "completed"}


def test_a_responses_stream_counts_tools_from_its_final_output():
    meter = StreamMeter(RESPONSES)
    meter.feed(responses_event("response.output_item.done", item=SEARCH))
    meter.feed(responses_event("response.completed", response={
        "status": "completed", "service_tier": "flex", "output": [SEARCH, {**SEARCH, "id": "ws_2"}],
        "usage": {"input_tokens": 10, "output_tokens": 4, "total_tokens": 14}}))
    assert meter.charge(0) == (Usage(input=10, output=4, units={"web_search": 2}, service_tier="flex"), False)


def test_a_responses_stream_cut_before_its_final_event_counts_the_items_it_saw():
    meter = StreamMeter(RESPONSES)
    meter.feed(responses_event("response.created", response={"status": "in_progress", "service_tier": "priority"}))
    meter.feed(responses_event("response.output_item.done", item=SEARCH))
    meter.feed(responses_event("response.output_item.done", item={"type": "code_interpreter_call", "id": "ci"}))
    meter.feed(responses_event("response.output_text.delta", delta="abcdefgh"))
    assert not meter.finished
    assert meter.charge(40) == (Usage(input=10, output=2, units={"web_search": 1, "code_container": 1},
                                      service_tier="priority"), True)


def test_a_responses_final_event_without_output_counts_the_items_it_saw():
    meter = StreamMeter(RESPONSES)
    meter.feed(responses_event("response.output_item.done", item=SEARCH))
    meter.feed(responses_event("response.incomplete", response={"usage": {"input_tokens": 3, "output_tokens": 1}}))
    assert meter.charge(0) == (Usage(input=3, output=1, units={"web_search": 1}), False)


def message_event(kind: str, **data) -> Event:
    return Event(kind, json.dumps({"type": kind, **data}))


START = {"input_tokens": 40, "cache_creation_input_tokens": 3_000, "cache_read_input_tokens": 500,
         "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000},
         "output_tokens": 1, "service_tier": "standard"}


def test_a_messages_stream_takes_input_classes_from_message_start_and_the_rest_from_message_delta():
    meter = StreamMeter(MESSAGES, "anthropic")
    meter.feed(message_event("message_start", message={"usage": START}))
    meter.feed(message_event("message_delta", usage={"output_tokens": 800,
                                                     "server_tool_use": {"web_search_requests": 2}}))
    assert meter.charge(0) == (Usage(input=40, cache_read=500, cache_write_5m=1_000, cache_write_1h=2_000,
                                     output=800, units={"web_search": 2}, service_tier="standard"), False)


def test_message_starts_output_tokens_is_a_placeholder_not_a_count():
    meter = StreamMeter(MESSAGES, "anthropic")
    meter.feed(message_event("message_start", message={"usage": START}))
    meter.feed(message_event("message_delta", usage={"server_tool_use": {"web_search_requests": 1}}))
    assert meter.charge(0)[0].output == 0


def test_message_delta_overrides_the_cache_write_breakdown():
    meter = StreamMeter(MESSAGES, "anthropic")
    meter.feed(message_event("message_start", message={"usage": START}))
    meter.feed(message_event("message_delta", usage={
        "input_tokens": 40, "cache_creation_input_tokens": 5_000, "cache_read_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 4_000},
        "output_tokens": 9}))
    assert meter.charge(0)[0].tokens() == {**Usage().tokens(), "input": 40, "cache_read": 500,
                                           "cache_write_5m": 1_000, "cache_write_1h": 4_000, "output": 9}


def test_a_messages_stream_without_message_delta_keeps_every_input_class_and_the_tier():
    meter = StreamMeter(MESSAGES, "anthropic")
    meter.feed(message_event("message_start", message={"usage": START}))
    meter.feed(message_event("content_block_delta", delta={"type": "text_delta", "text": "abcdefgh"}))
    assert meter.charge(0) == (Usage(input=40, cache_read=500, cache_write_5m=1_000, cache_write_1h=2_000,
                                     output=2, service_tier="standard"), True)


def test_a_message_delta_breakdown_above_its_total_is_rejected():
    meter = StreamMeter(MESSAGES, "anthropic")
    meter.feed(message_event("message_start", message={"usage": START}))
    with pytest.raises(UsageRejected):
        meter.feed(message_event("message_delta", usage={"cache_creation_input_tokens": 1_500, "output_tokens": 2}))


# --- the fake upstream speaks each dialect, complete and streamed -----------------------------------

@pytest.fixture(scope="module")
def fake():
    server = FakeUpstream().start()
    yield server
    server.stop()


def post(fake, path: str, doc: dict, **knobs) -> bytes:
    fake.next(**knobs)
    connection = http.client.HTTPConnection(fake.url.removeprefix("http://"), timeout=30)
    try:
        connection.request("POST", path, json.dumps(doc), {"Content-Type": "application/json"})
        return connection.getresponse().read()
    finally:
        connection.close()


def events(raw: bytes) -> list:
    return [parse(e) for e in Splitter().feed(raw)]


STREAM = {"model": "m", "stream": True, "stream_options": {"include_usage": True}}


def call(fake, route: str, path: str, dialect: str, stream: bool, knobs: dict):
    doc = STREAM if stream else {"model": "m"}
    raw = post(fake, path, doc, dialect=dialect, **knobs)
    if not stream:
        return metering.usage_from_body(route, json.loads(raw), dialect)
    meter = StreamMeter(route, dialect)
    for event in events(raw):
        meter.feed(event)
    assert meter.finished
    usage, estimated = meter.charge(len(json.dumps(doc)))
    assert not estimated
    return usage


def test_the_fake_answers_in_each_providers_own_shape(fake):
    """The fields each provider documents, where it puts them; not only what the meter makes of them."""
    moonshot = [e.json() for e in events(post(fake, "/v1/chat/completions", STREAM, dialect="moonshot"))]
    assert moonshot[-1] is None and moonshot[-2]["choices"][0]["usage"]["prompt_tokens"] == 11
    assert not any("usage" in chunk for chunk in moonshot[:-1])
    deepseek = json.loads(post(fake, "/v1/chat/completions", {}, dialect="deepseek", cache_read=4))["usage"]
    assert (deepseek["prompt_cache_hit_tokens"], deepseek["prompt_cache_miss_tokens"]) == (4, 11)
    assert "prompt_tokens_details" not in deepseek
    xai = json.loads(post(fake, "/v1/chat/completions", {}, dialect="xai", reasoning=5))["usage"]
    assert (xai["completion_tokens"], xai["total_tokens"], xai["num_sources_used"]) == (7, 23, 0)
    openrouter = json.loads(post(fake, "/v1/chat/completions", {}, dialect="openrouter", cache_write=9))["usage"]
    assert openrouter["prompt_tokens_details"]["cache_write_tokens"] == 9 and openrouter["prompt_tokens"] == 20
    dashscope = json.loads(post(fake, "/v1/chat/completions", {}, dialect="dashscope", cache_write=9))["usage"]
    assert dashscope["prompt_tokens_details"]["cache_creation"] == {"ephemeral_5m_input_tokens": 9}
    anthropic = {e.name: e.json() for e in events(post(fake, "/v1/messages", {"stream": True}, dialect="anthropic",
                                                       units={"web_search": 2}))}
    assert anthropic["message_start"]["message"]["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    assert anthropic["message_delta"]["usage"] == {
        "input_tokens": 11, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}, "output_tokens": 7,
        "server_tool_use": {"web_search_requests": 2}}
    responses = events(post(fake, "/v1/responses", {"stream": True}, units={"web_search": 1}))
    assert [e.name for e in responses][:2] == ["response.created", "response.output_item.done"]
    assert responses[-1].json()["response"]["output"][0]["type"] == "web_search_call"


CASES = [  # dialect, route, knobs, the usage they must be read as
    ("openai", CHAT, dict(input=200, cache_read=50, input_audio=1000, output=100, output_audio=800, reasoning=30,
                          service_tier="priority"),
     Usage(input=200, cache_read=50, input_audio=1000, output=100, output_audio=800, reasoning=30,
           service_tier="priority")),
    ("openai", CHAT, dict(input=10, output=5, reasoning=40, reasoning_outside=True),
     Usage(input=10, output=5, reasoning=40, notes=("reasoning_tokens 40 read as outside completion_tokens 5",))),
    ("deepseek", CHAT, dict(input=10_000, cache_read=90_000, output=200, reasoning=300),
     Usage(input=10_000, cache_read=90_000, output=200, reasoning=300)),
    ("dashscope", CHAT, dict(input=4, cache_read=7, cache_write=1000, cache_write_1h=2000, output=104),
     Usage(input=4, cache_read=7, cache_write_5m=1000, cache_write_1h=2000, output=104)),
    ("moonshot", CHAT, dict(input=10_000, cache_read=20_000, output=900),
     Usage(input=10_000, cache_read=20_000, output=900)),
    ("xai", CHAT, dict(input=26, cache_read=6, output=9, reasoning=94, units={"search_sources": 3}),
     Usage(input=26, cache_read=6, output=9, reasoning=94, units={"search_sources": 3})),
    ("openrouter", CHAT, dict(input=2_000, cache_read=100, cache_write=10_000, output=200),
     Usage(input=2_000, cache_read=100, cache_write_5m=10_000, output=200)),
    ("generic-openai", CHAT, dict(input=1_000, output=300, hidden=700),
     Usage(input=1_000, output=300, reasoning=700, notes=(guard_note(700),))),
    ("openai", RESPONSES, dict(input=100, cache_read=20, output=14, reasoning=50, service_tier="flex",
                               units={"web_search": 3, "file_search": 1, "code_container": 2, "web_fetch": 1}),
     Usage(input=100, cache_read=20, output=14, reasoning=50, service_tier="flex",
           units={"web_search": 3, "file_search": 1, "code_container": 2, "web_fetch": 1})),
    ("generic-openai", RESPONSES, dict(input=10, output=5, hidden=20),
     Usage(input=10, output=5, reasoning=20, notes=(guard_note(20),))),
    ("anthropic", MESSAGES, dict(input=50, cache_read=700, cache_write=1000, cache_write_1h=2000, output=400,
                                 reasoning=100, units={"web_search": 3, "web_fetch": 1}, service_tier="priority"),
     Usage(input=50, cache_read=700, cache_write_5m=1000, cache_write_1h=2000, output=500,
           units={"web_search": 3, "web_fetch": 1}, service_tier="priority")),
    ("anthropic", MESSAGES, dict(input=5, output=6),
     Usage(input=5, output=6, service_tier="standard")),
]
PATHS = {CHAT: "/v1/chat/completions", RESPONSES: "/v1/responses", MESSAGES: "/v1/messages"}


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
@pytest.mark.parametrize("dialect, route, knobs, expected", CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_the_fake_upstreams_usage_in_each_dialect_is_read_back(fake, dialect, route, knobs, expected, stream):
    assert call(fake, route, PATHS[route], dialect, stream, knobs) == expected


def test_an_output_item_whose_type_is_not_a_string_counts_nothing():
    from proxy.metering import units_from_body
    assert units_from_body(RESPONSES, {"output": [{"type": ["web_search_call"]}, {"type": "web_search_call"}]}) == \
        {"web_search": 1}
