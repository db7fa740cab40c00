"""Events reach the client as the upstream sends them, and capacity is refused fast, not queued."""
import threading

import pytest
import requests

from tests.proxy.conftest import wait_for_records

BODY = {"model": "claude-test", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("close_delimited", [False, True], ids=["chunked", "close-delimited"])
def test_first_event_arrives_before_the_upstream_sends_the_second(gateway, fake, key, close_delimited):
    gate = threading.Event()  # the fake sends its second event only once this is set
    fake.next(gate=gate, close_delimited=close_delimited)
    response = requests.post(f"{gateway}/v1/messages", json=BODY, headers={"x-api-key": key}, stream=True,
                             timeout=5)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    raw = response.raw
    first = b""
    while b"\n\n" not in first:
        piece = raw.read1(65536)  # blocks until bytes arrive; a buffered relay would time out here
        assert piece, "stream ended before the first event"
        first += piece
    assert first.startswith(b"event: message_start")
    assert not gate.is_set()
    gate.set()
    rest = first + response.raw.read()
    assert rest.rstrip().endswith(b'data: {"type": "message_stop"}')
    [record] = wait_for_records(1)
    assert record.status == "ok"


def test_calls_beyond_capacity_are_refused_at_once(app, gateway, fake, key):
    assert app.config["PROXY_MAX_INFLIGHT"] == 20
    gates = [threading.Event() for _ in range(20)]
    for gate in gates:
        fake.next(gate=gate)
    # One session kept open, so no stream's connection is closed with a throwaway session.
    client = requests.Session()
    client.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=25))
    streams = [client.post(f"{gateway}/v1/messages", json=BODY, headers={"x-api-key": key}, stream=True,
                           timeout=10) for _ in range(20)]
    try:
        assert all(s.status_code == 200 for s in streams)
        refused = requests.post(f"{gateway}/v1/messages", json=BODY, headers={"x-api-key": key}, timeout=5)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "2"
        assert refused.json()["error"]["type"] == "overloaded_error"
    finally:
        for gate in gates:
            gate.set()
        for s in streams:
            s.content
        client.close()
    assert len(wait_for_records(20)) == 20
    assert requests.post(f"{gateway}/v1/messages", json={**BODY, "stream": False}, headers={"x-api-key": key},
                         timeout=5).status_code == 200
