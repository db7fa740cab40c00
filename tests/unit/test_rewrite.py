"""The request parser and the billing fields: every value and encoding that must be refused. Pure."""
import json

import pytest

from proxy.errors import ApiError
from proxy.protocols import CHAT, EMBEDDINGS, MESSAGES, RESPONSES, ROUTES
from proxy.rewrite import MAX_DEPTH, parse_body, rewrite

BODIES = {
    CHAT: {"model": "m", "max_completion_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
    MESSAGES: {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
    RESPONSES: {"model": "m", "max_output_tokens": 100, "input": "hi"},
}


def run(route: str, document: dict, model_max_output: int = 1000):
    raw = json.dumps(document).encode()
    return rewrite(ROUTES[route], raw, parse_body(raw), upstream_model="up", model_max_output=model_max_output)


def refused(route: str, document: dict) -> str:
    with pytest.raises(ApiError) as caught:
        run(route, document)
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize("route", BODIES)
@pytest.mark.parametrize("stream", ["true", "false", 1, 0, [], {}, "yes", 1.0])
def test_stream_must_be_a_boolean(route, stream):
    assert "stream must be true or false" in refused(route, {**BODIES[route], "stream": stream})


@pytest.mark.parametrize("route", BODIES)
@pytest.mark.parametrize("stream, expected", [(True, True), (False, False), (None, False)])
def test_stream_booleans_and_null(route, stream, expected):
    assert run(route, {**BODIES[route], "stream": stream}).stream is expected


@pytest.mark.parametrize("route", BODIES)
@pytest.mark.parametrize("options, phrase", [
    ("include_usage", "stream_options must be an object"),
    ([True], "stream_options must be an object"),
    (True, "stream_options must be an object"),
    ({"include_usage": "true"}, "include_usage must be true or false"),
    ({"include_usage": 1}, "include_usage must be true or false"),
])
def test_stream_options_are_checked(route, options, phrase):
    assert phrase in refused(route, {**BODIES[route], "stream": True, "stream_options": options})


@pytest.mark.parametrize("route, field", [(CHAT, "max_completion_tokens"), (CHAT, "max_tokens"),
                                          (MESSAGES, "max_tokens"), (RESPONSES, "max_output_tokens")])
@pytest.mark.parametrize("value", ["100", 100.0, 1.5, True, False, 0, -5, [100], {"n": 1}, 1e300])
def test_output_limits_are_positive_whole_numbers(route, field, value):
    assert f"{field} must be a positive whole number" in refused(route, {**BODIES[route], field: value})


def test_huge_output_limits_are_lowered_to_the_models_and_held_at_it():
    body = run(CHAT, {**BODIES[CHAT], "max_completion_tokens": 10**30})
    assert body.max_output == 1000 and body.document["max_completion_tokens"] == 1000


@pytest.mark.parametrize("n", [0, -1, 129, "2", 2.0, True, [2]])
def test_n_is_a_whole_number_from_1_to_128(n):
    assert "n must be a positive whole number from 1 to 128" in refused(CHAT, {**BODIES[CHAT], "n": n})


@pytest.mark.parametrize("n, ceiling", [(None, 100), (1, 100), (7, 700), (128, 12_800)])
def test_n_multiplies_the_output_ceiling(n, ceiling):
    document = {**BODIES[CHAT], "n": n} if n is not None else BODIES[CHAT]
    assert run(CHAT, document).output_ceiling == ceiling


@pytest.mark.parametrize("route", [MESSAGES, RESPONSES])
def test_n_multiplies_nothing_where_the_api_has_no_choices(route):
    assert run(route, {**BODIES[route], "n": 5}).choices == 1


def test_a_missing_limit_is_written_in_and_held():
    body = run(CHAT, {"model": "m", "messages": []})
    assert body.max_output == 1000 and body.document["max_completion_tokens"] == 1000
    assert "max_tokens: Field required" in refused(MESSAGES, {"model": "m", "messages": []})


def test_chat_streams_ask_for_usage_and_remember_who_asked():
    body = run(CHAT, {**BODIES[CHAT], "stream": True})
    assert body.document["stream_options"] == {"include_usage": True} and not body.client_wants_usage
    body = run(CHAT, {**BODIES[CHAT], "stream": True, "stream_options": {"include_usage": True}})
    assert body.client_wants_usage


@pytest.mark.parametrize("raw, phrase", [
    (b'{"model": "m", "stream": false, "stream": true}', "'stream' twice"),
    (b'{"model": "m", "a": {"x": 1, "x": 2}}', "'x' twice"),
    (b'{"model": "m", "max_tokens": NaN}', "not valid JSON"),
    (b'{"model": "m", "max_tokens": -Infinity}', "not valid JSON"),
    (b'{"model": "m", "content": "\xff\xfe"}', "not valid UTF-8"),
    (b'{"model": "m", "content": "\xed\xa0\x80"}', "not valid UTF-8"),  # a surrogate encoded as UTF-8
    ('{"model": "m"}'.encode("utf-16"), "not valid UTF-8"),
    (b'\xef\xbb\xbf{"model": "m"}', "not valid JSON"),
    (b'{"model": "m", "content": "\\ud800"}', "lone surrogate"),
    (b'{"model": "m", "content": "\\udc00 tail"}', "lone surrogate"),
    (b'{"\\ud800": 1}', "lone surrogate"),
    (b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests deeper"),
    (b'{"model": "m", "x": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", "nests deeper"),
    (b'{"model": "m", "x": ' + b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH + b"}", "nests deeper"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
    (b"", "not valid JSON"),
])
def test_bodies_two_parsers_could_read_differently_are_refused(raw, phrase):
    with pytest.raises(ApiError) as caught:
        parse_body(raw)
    assert caught.value.status == 400 and phrase in caught.value.message


def test_valid_unicode_and_nesting_within_the_limit_are_fine():
    assert parse_body('{"model": "m", "content": "\\ud83d\\ude00 中文"}'.encode())["content"] == "😀 中文"
    deep = b'{"x": ' + b"[" * (MAX_DEPTH - 2) + b"]" * (MAX_DEPTH - 2) + b"}"
    assert "x" in parse_body(deep)


def test_the_body_goes_upstream_untouched_when_nothing_changes():
    raw = b'{"model": "up",  "max_completion_tokens": 5, "messages": []}'
    body = rewrite(ROUTES[CHAT], raw, parse_body(raw), upstream_model="up", model_max_output=10)
    assert body.body == raw


def test_stream_on_embeddings_is_refused():
    raw = b'{"model": "m", "input": "x", "stream": true}'
    with pytest.raises(ApiError, match="stream is not supported"):
        rewrite(ROUTES[EMBEDDINGS], raw, parse_body(raw), upstream_model="up", model_max_output=10)
