"""Variants of issue 11's rate limits and failover that its own tests do not try: the free route's
headers, an admitted call that fails upstream, and an upstream's own Retry-After."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest
import requests
from sqlalchemy import select

from portal import apilimits, catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey
from proxy import errors
from tests.fake_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.proxy.conftest import wait_for_records

CHAT = {"model": "gpt-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
CLAUDE = {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATE_LIMIT_RPM_PER_KEY": 0, "RATE_LIMIT_RPM_PER_ACCOUNT": 0}


@pytest.fixture(autouse=True)
def mid_minute(monkeypatch):
    """The limits' clock stands still half-way through a minute (as in test_rate_limits.py)."""
    moment = (time.time() // 60) * 60 + 30
    monkeypatch.setattr(apilimits, "clock", lambda: moment)


def limit_key(**values):
    with atomic():
        for row in db.session.scalars(select(ApiKey)):
            for name, value in values.items():
                setattr(row, name, value)


class Refusing:
    """An upstream that answers every call with one status, its own headers and a JSON error."""

    def __init__(self, status: int, headers: dict):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.calls += 1
                payload = json.dumps({"error": {"type": "rate_limit_error", "message": "provider says wait"}}).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.calls = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def refusing(app, catalog_ready):
    """Point both fake upstreams at a Refusing server made by the test: refusing(status, headers)."""
    made = []

    def make(status: int, headers: dict) -> Refusing:
        server = Refusing(status, headers)
        made.append(server)
        with atomic():
            catalog.update_upstream("fake-openai", base_url=server.url + "/v1")
            catalog.update_upstream("fake-anthropic", base_url=server.url)
        return server
    yield make
    for server in made:
        server.stop()


# -- the free route and failed calls carry the limits' headers ----------------------------------------

def test_count_tokens_answers_with_the_anthropic_rate_limit_headers(gateway, key):
    """count_tokens is counted against the requests per minute: its answers say where the key stands."""
    limit_key(rpm_limit=2)
    body = {"model": "claude-test", "messages": CLAUDE["messages"]}
    ok = requests.post(f"{gateway}/v1/messages/count_tokens", json=body, headers={"x-api-key": key}, timeout=30)
    assert ok.status_code == 200, ok.text
    assert (ok.headers["anthropic-ratelimit-requests-limit"], ok.headers["anthropic-ratelimit-requests-remaining"]) \
        == ("2", "1")
    assert "x-ratelimit-limit-requests" not in ok.headers
    # The SDK's raw response exposes them.
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    raw = client.messages.with_raw_response.count_tokens(**body)
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_an_admitted_call_that_fails_upstream_still_carries_the_headers(gateway, key, fake):
    limit_key(rpm_limit=5)
    fake.next(status=500)
    failed = requests.post(f"{gateway}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"},
                           timeout=30)
    assert failed.status_code == 502, failed.text
    assert (failed.headers["x-ratelimit-limit-requests"], failed.headers["x-ratelimit-remaining-requests"]) \
        == ("5", "4")
    assert failed.headers["X-Request-Id"] == wait_for_records(1)[0].request_id


# -- an upstream's own Retry-After ---------------------------------------------------------------------

@pytest.mark.one_backend
@pytest.mark.parametrize("given, passed", [("17", "17"), ("2.5", "3"), ("0", "1"), ("-4", "1"), ("999999", "3600"),
                                           (None, None), ("soon", None), ("nan", None), ("inf", None),
                                           ("Wed, 21 Oct 2015 07:28:00 GMT", None)])
def test_an_upstream_retry_after_is_read_as_bounded_whole_seconds(given, passed):
    assert errors.retry_after(given) == passed


def test_an_upstream_429_passes_on_its_own_retry_after(gateway, key, refusing):
    refusing(429, {"Retry-After": "17"})
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(**CHAT)
    assert refused.value.response.headers["retry-after"] == "17"
    [record] = wait_for_records(1)
    assert (record.status, record.http_status, record.cost) == ("upstream_error", 429, 0)


def test_an_overloaded_anthropic_upstream_passes_on_its_retry_after(gateway, key, refusing):
    refusing(529, {"retry-after": "42"})
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(**CLAUDE, stream=True)
    assert failed.value.status_code == 503 and failed.value.response.headers["retry-after"] == "42"
    assert failed.value.body["error"]["type"] == "overloaded_error"


def test_an_upstream_429_without_a_usable_retry_after_still_says_when(gateway, key, refusing):
    refusing(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    answer = requests.post(f"{gateway}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"},
                           timeout=30)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "5"


@pytest.mark.parametrize("model, route, secret", [
    ("gpt-test", "/v1/chat/completions", OPENAI_KEY),
    ("claude-test", "/v1/messages", ANTHROPIC_KEY),
])
def test_an_error_event_mid_stream_never_shows_the_upstream_key(gateway, key, fake, model, route, secret):
    """A provider that gives up mid-stream with an error event echoing its key: relayed without it."""
    fake.next(error_event_after=1)
    response = requests.post(f"{gateway}{route}", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                             json={"model": model, "stream": True, "max_tokens": 50,
                                   "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    assert "bad key [redacted]" in response.text  # the event still reaches the client, as the provider said it
    for run in (secret, secret[-12:], secret[3:15]):
        assert run not in response.text
    wait_for_records(1)
