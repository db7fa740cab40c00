"""Streams whose client leaves (docs/billing.md, "Disconnects").

The provider finishes a generation whatever the client does, and bills it: hidden reasoning
included. The gateway stops relaying but reads on for up to DRAIN_SECONDS and charges what the
upstream reports; without a report by then, the input and the output relayed.

The upstream here is scripted event by event (the shared fake sends a stream's events without
waiting for the test), so each test decides exactly what the upstream has sent when the client
leaves and what it sends after.
"""
import json
import logging
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from portal import apikeys, catalog
from portal.database import atomic
from portal.pricing import Price, Usage, quote
from proxy import metering
from proxy.metering import StreamMeter
from proxy.relay import relay
from proxy.sse import Splitter
from proxy.upstreams import UpstreamUnavailable
from tests.factories import make_user
from tests.fake_upstream import ANTHROPIC_KEY, OPENAI_KEY, POLL
from tests.proxy.conftest import CREDIT, balance, wait_for_records


O3 = Price(input=2_000_000, output=8_000_000)  # o3's published $2 / $8 per million
SONNET = Price(input=3_000_000, output=15_000_000, cache_read=300_000, cache_write_5m=3_750_000)
# A body that can account for 10,000 input tokens (its bound is its bytes plus 4,096).
PROMPT = "word " * 2_000
DRAINING = "the client left mid-stream"


def sse(data, event=None) -> bytes:
    return (f"event: {event}\n" if event else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"


def chunk(delta=None, finish=None, **extra) -> bytes:
    choices = [] if delta is None and finish is None else \
        [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return sse({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "o3", **extra,
                "choices": choices})


class ScriptedUpstream:
    """An upstream on loopback that sends each stream event only when the test pushes it."""

    def __init__(self):
        self.events: "queue.Queue" = queue.Queue()
        self.received: list = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                upstream.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    while (event := upstream.events.get(timeout=60)) is not None:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (OSError, queue.Empty):
                    pass  # the gateway went away: nothing to finish

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True).start()

    def push(self, *events) -> None:
        for event in events:
            self.events.put(event)

    def end(self) -> None:
        self.events.put(None)

    def stop(self) -> None:
        self.end()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app_config(app_config, request):
    # Long enough never to decide a test that waits for the upstream's report; the deadline
    # tests set their own.
    return {**app_config, "DRAIN_SECONDS": 60.0, **getattr(request, "param", {})}


@pytest.fixture
def scripted():
    upstream = ScriptedUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture
def drain_key(app, scripted):
    with atomic():
        catalog.add_upstream("scripted-openai", "openai", scripted.url + "/v1", OPENAI_KEY, allow_private_host=True)
        catalog.add_upstream("scripted-anthropic", "anthropic", scripted.url, ANTHROPIC_KEY, allow_private_host=True)
        catalog.set_model("o3-test", "scripted-openai", O3, upstream_model="o3", max_output_tokens=100_000)
        catalog.set_model("sonnet-test", "scripted-anthropic", SONNET, upstream_model="claude-sonnet-4-5",
                          max_output_tokens=64_000)
    user = make_user("leaver@example.com", credit=CREDIT)
    with atomic():
        return apikeys.issue(user, "drain")[1]


CHAT = ("/v1/chat/completions", {"model": "o3-test", "max_completion_tokens": 25_000, "stream": True,
                                 "stream_options": {"include_usage": True},
                                 "messages": [{"role": "user", "content": PROMPT}]})
MESSAGES = ("/v1/messages", {"model": "sonnet-test", "max_tokens": 25_000, "stream": True,
                             "messages": [{"role": "user", "content": PROMPT}]})


def start(gateway, key, route) -> requests.Response:
    path, body = route
    response = requests.post(f"{gateway}{path}", json=body, stream=True, timeout=30,
                             headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response


def leave_after_first_event(response) -> None:
    """Read the first event, then hang up."""
    next(line for line in response.iter_lines() if line.startswith(b"data:"))
    response.close()


def until_draining(scripted, caplog, delta) -> int:
    """Push one delta at a time until the gateway notices the client left (it notices when it next
    writes to the client); the number of deltas pushed."""
    for pushed in range(1, 50):
        scripted.push(delta)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            if any(DRAINING in r.getMessage() for r in caplog.records):
                return pushed
            time.sleep(0.01)
    raise AssertionError("the gateway never noticed that the client left")


O3_USAGE = {"prompt_tokens": 10_000, "completion_tokens": 20_001, "total_tokens": 30_001,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 20_000}}


def test_a_client_that_leaves_is_charged_what_the_upstream_reports(gateway, scripted, drain_key, caplog):
    """The issue's o3 row: 10K input, 20K hidden reasoning, a client gone after the first event."""
    caplog.set_level(logging.INFO, logger="proxy.relay")
    scripted.push(chunk({"role": "assistant", "content": ""}))  # before the call: the gateway's headers wait for it
    response = start(gateway, drain_key, CHAT)
    leave_after_first_event(response)
    until_draining(scripted, caplog, chunk({"content": "A"}))
    scripted.push(chunk({}, "stop"), chunk(usage=O3_USAGE), b"data: [DONE]\n\n")
    scripted.end()
    [record] = wait_for_records(1, timeout=30)
    assert (record.status, record.usage_estimated) == ("client_disconnected", False)
    assert (record.input_tokens, record.output_tokens, record.reasoning_tokens) == (10_000, 1, 20_000)
    assert record.cost == 10_000 * 2 + 1 * 8 + 20_000 * 8 == 180_008
    money = balance(gateway, drain_key)
    assert (money["balance_micro_usd"], money["held_micro_usd"]) == (CREDIT - 180_008, 0)


@pytest.mark.parametrize("app_config", [{"DRAIN_SECONDS": 0.2}], indirect=True)
def test_without_a_report_by_the_deadline_the_input_and_the_output_relayed(gateway, scripted, drain_key, caplog):
    caplog.set_level(logging.INFO, logger="proxy.relay")
    scripted.push(chunk({"role": "assistant", "content": ""}))  # before the call: the gateway's headers wait for it
    response = start(gateway, drain_key, CHAT)
    leave_after_first_event(response)
    pushed = until_draining(scripted, caplog, chunk({"content": "A"}))
    scripted.push(*[chunk({"content": "B" * 400})] * 20)  # read after the client left: not charged
    # The upstream says nothing more: the deadline settles the call while the upstream is still open.
    [record] = wait_for_records(1, timeout=30)
    scripted.end()
    assert (record.status, record.usage_estimated) == ("client_disconnected", True)
    body_bytes = len(json.dumps(CHAT[1]).encode())
    assert record.input_tokens == metering.estimated_input_tokens(body_bytes)
    assert 1 <= record.output_tokens <= pushed  # one token per delta relayed; none of the 20 read after
    assert record.cost == quote(O3, Usage(input=record.input_tokens, output=record.output_tokens))
    assert balance(gateway, drain_key)["held_micro_usd"] == 0


@pytest.mark.parametrize("app_config", [{"DRAIN_SECONDS": 0.2}], indirect=True)
def test_anthropic_input_from_message_start_when_no_report_comes(gateway, scripted, drain_key, caplog):
    caplog.set_level(logging.INFO, logger="proxy.relay")
    start_usage = {"input_tokens": 9_000, "cache_read_input_tokens": 500, "cache_creation_input_tokens": 300,
                   "output_tokens": 1}
    scripted.push(sse({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant",
                                                            "content": [], "usage": start_usage}}, "message_start"))
    response = start(gateway, drain_key, MESSAGES)
    leave_after_first_event(response)
    delta = sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "A"}},
                "content_block_delta")
    pushed = until_draining(scripted, caplog, delta)
    [record] = wait_for_records(1, timeout=30)
    scripted.end()
    assert (record.status, record.usage_estimated) == ("client_disconnected", True)
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_5m_tokens) == (9_000, 500, 300)
    assert 1 <= record.output_tokens <= pushed
    assert record.cost == quote(SONNET, Usage(input=9_000, cache_read=500, cache_write_5m=300,
                                              output=record.output_tokens))


def test_anthropic_usage_read_after_the_client_left(gateway, scripted, drain_key, caplog):
    caplog.set_level(logging.INFO, logger="proxy.relay")
    start_usage = {"input_tokens": 9_000, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
                   "output_tokens": 1}
    scripted.push(sse({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant",
                                                            "content": [], "usage": start_usage}}, "message_start"))
    response = start(gateway, drain_key, MESSAGES)
    leave_after_first_event(response)
    until_draining(scripted, caplog, sse({"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "thinking_delta", "thinking": "hm"}},
                                         "content_block_delta"))
    scripted.push(sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                       "usage": {"output_tokens": 12_000}}, "message_delta"),
                  sse({"type": "message_stop"}, "message_stop"))
    scripted.end()
    [record] = wait_for_records(1, timeout=30)
    assert (record.status, record.usage_estimated, record.output_tokens) == ("client_disconnected", False, 12_000)
    assert record.cost == quote(SONNET, Usage(input=9_000, output=12_000))


@pytest.mark.parametrize("app_config", [{"DRAIN_SECONDS": 0}], indirect=True)
def test_draining_off_charges_at_once(gateway, scripted, drain_key, caplog):
    scripted.push(chunk({"role": "assistant", "content": ""}))  # before the call: the gateway's headers wait for it
    response = start(gateway, drain_key, CHAT)
    leave_after_first_event(response)
    for _ in range(50):  # the gateway notices when it next writes; it settles then, without reading on
        scripted.push(chunk({"content": "A"}))
        if found := wait_for_records(1, timeout=1):
            break
    [record] = found
    scripted.push(chunk({}, "stop"), chunk(usage=O3_USAGE), b"data: [DONE]\n\n")
    scripted.end()
    assert (record.status, record.usage_estimated, record.reasoning_tokens) == ("client_disconnected", True, 0)
    assert not any(DRAINING in r.getMessage() for r in caplog.records)


# -- the relay itself, without HTTP: what the server can do to a stream, and the drain's races ---------


class StubResponse:
    """An upstream response whose chunks the test hands over one at a time."""

    def __init__(self):
        self.chunks_in: "queue.Queue" = queue.Queue()
        self.closed = threading.Event()

    def chunks(self):
        while (piece := self.chunks_in.get(timeout=30)) is not None:
            if isinstance(piece, Exception):
                raise piece
            yield piece

    def close(self):
        self.closed.set()


class Settles:
    def __init__(self):
        self.calls, self.done = [], threading.Event()

    def __call__(self, status, usage, estimated, error, first_byte):
        self.calls.append((status, usage, estimated))
        self.done.set()


def stub_relay(drain_seconds):
    response, settles = StubResponse(), Settles()
    stream = relay(response, StreamMeter("chat", "openai"), request_id="req_stub", body_bytes=400, strip_usage=False,
                   error_shape="openai", settle=settles, drain_seconds=drain_seconds)
    return response, settles, stream


def drain_threads():
    return [t for t in threading.enumerate() if t.name == "drain req_stub"]


USAGE_EVENTS = chunk({}, "stop") + chunk(usage=O3_USAGE) + b"data: [DONE]\n\n"


def test_a_stream_closed_before_its_first_event_is_charged_from_the_drain():
    """The server may close a response it never began to send: the call is still charged, from what
    the upstream then reports (before issue 9 it was settled as free)."""
    response, settles, stream = stub_relay(drain_seconds=60)
    stream.close()
    assert not settles.done.is_set()  # reading on, off this thread
    response.chunks_in.put(chunk({"role": "assistant", "content": "Hi"}) + USAGE_EVENTS)
    assert settles.done.wait(30)
    [(status, usage, estimated)] = settles.calls
    assert (status, estimated, usage.input, usage.reasoning) == ("client_disconnected", False, 10_000, 20_000)
    assert response.closed.wait(30)


def test_a_stream_closed_before_its_first_event_without_draining_is_charged_its_input():
    response, settles, stream = stub_relay(drain_seconds=0)
    stream.close()
    [(status, usage, estimated)] = settles.calls
    assert (status, estimated, usage) == ("client_disconnected", True, Usage(input=100))  # 400 bytes / 4
    assert response.closed.is_set()


def test_the_deadline_and_a_late_report_settle_once():
    response, settles, stream = stub_relay(drain_seconds=0.05)
    events = iter(stream)
    response.chunks_in.put(chunk({"role": "assistant", "content": "Hi"}))
    next(events)
    events.close()  # the client left; the upstream says nothing until after the deadline
    assert settles.done.wait(30)
    [(status, usage, estimated)] = settles.calls
    assert (status, estimated, usage.output) == ("client_disconnected", True, 1)
    response.chunks_in.put(USAGE_EVENTS)  # the report arrives late: the call was already settled
    response.chunks_in.put(None)
    for thread in drain_threads():
        thread.join(30)
    assert len(settles.calls) == 1


def test_an_upstream_failure_while_draining_settles_with_what_was_relayed():
    response, settles, stream = stub_relay(drain_seconds=60)
    events = iter(stream)
    response.chunks_in.put(chunk({"role": "assistant", "content": "Hi there"}))
    next(events)
    events.close()
    response.chunks_in.put(chunk({"content": "never relayed " * 50}))
    response.chunks_in.put(UpstreamUnavailable("the upstream connection broke mid-response"))
    assert settles.done.wait(30)
    for thread in drain_threads():
        thread.join(30)
    [(status, usage, estimated)] = settles.calls
    assert (status, estimated, usage) == ("client_disconnected", True, Usage(input=100, output=2))  # 8 chars


def test_events_left_in_a_chunk_when_the_client_leaves_are_read_by_the_drain():
    """One read can bring several events: those after the one the client missed are metered too."""
    response, settles, stream = stub_relay(drain_seconds=60)
    events = iter(stream)
    response.chunks_in.put(chunk({"role": "assistant", "content": "Hi"}) + chunk({"content": "x"}) + USAGE_EVENTS)
    next(events)
    events.close()
    response.chunks_in.put(None)
    assert settles.done.wait(30)
    [(status, usage, estimated)] = settles.calls
    assert (estimated, usage.reasoning) == (False, 20_000)


def test_a_finished_stream_is_not_drained():
    response, settles, stream = stub_relay(drain_seconds=60)
    response.chunks_in.put(chunk({"role": "assistant", "content": "Hi"}) + USAGE_EVENTS)
    events = iter(stream)
    sent = [next(events) for _ in range(4)]  # settled before its last event goes out
    assert Splitter().feed(b"".join(sent))[-1] == b"data: [DONE]\n\n"
    events.close()
    [(status, _, estimated)] = settles.calls
    assert (status, estimated) == ("ok", False) and drain_threads() == []
