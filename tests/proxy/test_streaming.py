"""Events reach the client as the upstream sends them."""
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
