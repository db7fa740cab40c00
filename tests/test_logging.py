"""Logs: an access line per request (streams when they end), request ids, JSON lines, a line per
operator command, and no secrets, through the real server and commands."""
import io
import json
import logging
import threading
import time

import pytest
import requests

from portal import catalog, logs
from portal.database import atomic
from tests.fake_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.proxy import conftest as proxy_fixtures
from tests.proxy.conftest import records

# The proxy tests' fixtures (its catalog, a key with credit; the fake upstream is everyone's), for this module too.
catalog_ready, key = proxy_fixtures.catalog_ready, proxy_fixtures.key

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "Hello there, how are you today?"}]}


@pytest.fixture
def app_config():
    return {"UPSTREAM_CONNECT_TIMEOUT": 10.0, "UPSTREAM_FIRST_BYTE_TIMEOUT": 30.0, "UPSTREAM_IDLE_TIMEOUT": 30.0,
            "SERVE_THREADS": 24, "PROXY_MAX_INFLIGHT": 20}


@pytest.fixture
def served_logs(app):
    """What `serve` would write, as JSON lines, for the length of the test."""
    stream = io.StringIO()
    handler = logs.configure_serving({"LOG_FORMAT": "json"}, stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logging.getLogger().removeHandler(handler)


def access_lines(lines: list, path: str) -> list:
    return [line for line in lines if line["logger"] == logs.ACCESS_LOGGER and line["path"] == path]


def wait_for_access(served_logs, path: str, count: int) -> list:
    """The access line is written when the server closes the response, just after the client has it."""
    deadline = time.monotonic() + 30
    while len(found := access_lines(served_logs(), path)) < count:
        assert time.monotonic() < deadline, f"{len(found)} access lines for {path}, not {count}"
        time.sleep(0.02)
    return found


@pytest.mark.parametrize("text, hidden", [
    ("key tg_" + "a1B2" * 10 + " used", "a1B2" * 10),
    ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    (f"upstream said: invalid key {ANTHROPIC_KEY}", ANTHROPIC_KEY),
    (f"upstream said: invalid key {OPENAI_KEY}", OPENAI_KEY),
    ("stripe sk_test_fake_key_for_the_suite_0000 failed", "fake_key_for_the_suite_0000"),
    ("signing secret whsec_abcdefghij", "abcdefghij"),
    ("form password=hunter2hunter2&email=x", "hunter2hunter2"),
    ('{"api_key": "s3cr3t-value"}', "s3cr3t-value"),
    ("redis://:pa55word@redis:6379/0 down", "pa55word"),
])
def test_the_mask_hides_anything_that_looks_like_a_secret(text, hidden):
    masked = logs.mask_secrets(text)
    assert hidden not in masked and "***" in masked


def test_the_mask_applies_to_messages_arguments_and_tracebacks():
    stream = io.StringIO()
    handler = logs.install_filters(logging.StreamHandler(stream))
    # Handed to the handler directly, not logged: the suite's own check (tests/secretlog.py) would
    # rightly fail the run on these records.
    handler.handle(logging.LogRecord("tests.masking", logging.WARNING, __file__, 1, "calling with %s",
                                     (f"Bearer {OPENAI_KEY}",), None))
    try:
        raise RuntimeError(f"upstream refused {ANTHROPIC_KEY}")
    except RuntimeError:
        import sys
        handler.handle(logging.LogRecord("tests.masking", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()))
    written = stream.getvalue()
    assert "calling with Bearer ***" in written and "RuntimeError: upstream refused sk-ant-***" in written
    assert OPENAI_KEY not in written and ANTHROPIC_KEY not in written


def test_each_request_gets_one_access_line_with_its_id(gateway, served_logs):
    kept = requests.get(f"{gateway}/healthz?probe=secret-in-query", headers={"X-Request-Id": "lb-check.42"}, timeout=10)
    assert kept.headers["X-Request-Id"] == "lb-check.42"
    made = requests.get(f"{gateway}/healthz", headers={"X-Request-Id": "no spaces\tor tabs" + "x" * 80}, timeout=10)
    assert made.headers["X-Request-Id"].startswith("r_")
    [first, second] = wait_for_access(served_logs, "/healthz", 2)
    assert (first["method"], first["status"], first["request_id"], first["level"]) == ("GET", 200, "lb-check.42", "INFO")
    assert isinstance(first["duration_ms"], float) and "secret-in-query" not in json.dumps(first)
    assert second["request_id"] == made.headers["X-Request-Id"]


def test_a_calls_lines_carry_its_usage_records_id(gateway, key, fake, served_logs):
    fake.next()
    answer = requests.post(f"{gateway}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"},
                           timeout=30)
    [record] = records()
    assert answer.headers["X-Request-Id"] == record.request_id
    [line] = wait_for_access(served_logs, "/v1/chat/completions", 1)
    assert line["request_id"] == record.request_id and line["status"] == 200


def test_a_stream_is_logged_when_it_ends(gateway, key, fake, served_logs):
    gate = threading.Event()
    fake.next(gate=gate)
    stream = requests.post(f"{gateway}/v1/chat/completions", json={**CHAT, "stream": True},
                           headers={"Authorization": f"Bearer {key}"}, timeout=30, stream=True)
    lines = stream.iter_lines()
    assert next(lines)
    assert access_lines(served_logs(), "/v1/chat/completions") == []  # still streaming
    gate.set()
    for _ in lines:
        pass
    [line] = wait_for_access(served_logs, "/v1/chat/completions", 1)
    assert line["request_id"] == stream.headers["X-Request-Id"] == records()[0].request_id


def test_a_failing_upstream_with_a_key_in_its_error_logs_no_key(gateway, key, fake, served_logs, caplog):
    caplog.set_level(logging.DEBUG)
    fake.next(status=500, echo_key_in_error=True)
    fake.next(status=500, echo_key_in_error=True)
    fake.next(status=500, echo_key_in_error=True)
    answer = requests.post(f"{gateway}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"},
                           timeout=30)
    assert answer.status_code >= 500 and OPENAI_KEY not in answer.text
    raw = "\n".join(logging.Formatter("%(message)s").format(r) for r in caplog.records)
    assert "/v1/chat/completions" in raw  # the records were captured
    for secret in (OPENAI_KEY, key):
        assert secret not in raw  # not even before the serving handler's mask
        assert secret not in json.dumps(served_logs())


def test_an_operator_command_logs_its_name_and_status_not_its_arguments(app, cli, caplog):
    caplog.set_level(logging.INFO, logger=logs.COMMAND_LOGGER)
    with atomic():
        catalog.add_upstream("rotating", "openai", "https://api.example.com/v1", "sk-old-key-0000000000")
    new_key = "sk-new-key-never-logged-12345"
    result = cli("upstreams", "update", "rotating", "--api-key", new_key)
    assert result.exit_code == 0, result.output
    failed = cli("upstreams", "update", "no-such-upstream", "--api-key", new_key)
    assert failed.exit_code == 1
    lines = [r.getMessage() for r in caplog.records if r.name == logs.COMMAND_LOGGER]
    assert lines[-2:] == ["command upstreams update exited 0", "command upstreams update exited 1"]
    assert all(new_key not in r.getMessage() for r in caplog.records)
