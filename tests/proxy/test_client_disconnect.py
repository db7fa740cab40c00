"""Clients that hang up while the upstream is silent, seen by waitress (`channel_request_lookahead`,
`waitress.client_disconnected`) rather than at the next write, which may never come.

- A stream whose client leaves while the upstream thinks stops reading the upstream: at once
  with DRAIN_SECONDS=0, at the drain's deadline otherwise, and is recorded `client_disconnected`
  (docs/billing.md, "Disconnects").
- A complete (non-streamed) answer that comes after its client left (nginx gave up at its
  proxy_read_timeout) is recorded `client_disconnected`, not `ok`, and charged the usage the
  upstream reported, as the disconnect rule says.

The clients are raw sockets, so each test decides exactly when the connection closes.
"""
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from waitress.channel import HTTPChannel

from portal import apikeys, catalog
from portal.database import atomic
from portal.pricing import Usage, quote
from tests.conftest import served_in_thread
from tests.factories import make_user
from tests.fake_upstream import OPENAI_KEY, POLL
from tests.proxy.conftest import CREDIT, GPT, balance, wait_for_records

pytestmark = pytest.mark.slow


@pytest.fixture
def app_config(app_config):
    # The upstream's silence must outlast every wait below: only the client's leaving may end it.
    return {**app_config, "UPSTREAM_IDLE_TIMEOUT": 300.0, "UPSTREAM_FIRST_BYTE_TIMEOUT": 300.0}


class SilentUpstream:
    """Sends a stream's first event, then nothing until released, watching for the gateway to hang up."""

    def __init__(self):
        self.hung_up = threading.Event()
        self.release = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._chunk(b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                            b'"choices":[{"index":0,"delta":{"content":"Thinking"},"finish_reason":null}]}\n\n')
                while not upstream.release.is_set():
                    readable, _, _ = select.select([self.connection], [], [], 0.05)
                    if readable:
                        try:
                            closed = self.connection.recv(1) == b""
                        except OSError:
                            closed = True
                        if closed:
                            upstream.hung_up.set()
                            return
                self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, event: bytes):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True).start()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def silent():
    upstream = SilentUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture
def silent_key(app, silent):
    with atomic():
        catalog.add_upstream("silent", "openai", silent.url + "/v1", OPENAI_KEY, allow_private_host=True)
        catalog.set_model("thinker", "silent", GPT, upstream_model="o-think", max_output_tokens=4096)
    user = make_user("leaver@example.com", credit=CREDIT)
    with atomic():
        return apikeys.issue(user, "tests")[1]


@pytest.fixture
def served(app):
    """The app on waitress as `serve` configures it, and the server (to see which connections it holds)."""
    with served_in_thread(app) as server:
        yield server


def send(server, key: str, body: dict) -> socket.socket:
    """A raw client: the request sent, the connection left open."""
    sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=60)
    payload = json.dumps(body).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (key.encode(), len(payload), payload))
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        chunk = sock.recv(4096)
        assert chunk, f"the gateway closed the connection first: {received!r}"
        received += chunk
    return received


def poll(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("app_config", [{"DRAIN_SECONDS": 0.0}, {"DRAIN_SECONDS": 1.0}], indirect=True,
                         ids=["no-drain", "drain"])
def test_a_client_leaving_a_silent_stream_stops_the_upstream_read(app_config, served, silent, silent_key):
    client = send(served, silent_key, {"model": "thinker", "stream": True, "max_tokens": 100,
                                       "messages": [{"role": "user", "content": "think hard"}]})
    read_until(client, b"Thinking")
    client.close()

    # The upstream would go on until released; the gateway hangs up on it first.
    assert silent.hung_up.wait(60), "the gateway kept reading the upstream after its client left"
    [record] = wait_for_records(1, timeout=60)
    assert record.status == "client_disconnected"
    assert record.usage_estimated  # nothing reported: the input and the output relayed
    assert record.cost > 0


def test_an_answer_nobody_waits_for_any_more_is_recorded_client_disconnected(served, fake, key):
    gate = threading.Event()
    fake.next(before_headers=gate)  # the upstream thinks past the proxy's read timeout
    before = balance(f"http://127.0.0.1:{served.effective_port}", key)["balance_micro_usd"]
    client = send(served, key, {"model": "gpt-test", "max_tokens": 100,
                                "messages": [{"role": "user", "content": "hi"}]})
    assert poll(lambda: fake.received, 60), "the call never reached the upstream"
    client.close()  # nginx gave up: 504 to its client, and it closes its connection to us
    # Waitress sees the hang-up while the call waits (it drops the connection); without its
    # lookahead it would not, and the answer below would be recorded as delivered.
    poll(lambda: not [c for c in list(served._map.values()) if isinstance(c, HTTPChannel)], 20)
    gate.set()

    [record] = wait_for_records(1, timeout=60)
    cost = quote(GPT, Usage(input=11, output=7))  # what the upstream reported: its usage is known
    assert (record.status, record.usage_estimated, record.cost) == ("client_disconnected", False, cost)
    after = balance(f"http://127.0.0.1:{served.effective_port}", key)
    assert (after["balance_micro_usd"], after["held_micro_usd"]) == (before - cost, 0)
