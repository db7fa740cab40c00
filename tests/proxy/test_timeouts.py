"""Upstreams that stop answering: the call times out, says so in the API's shape, and is billed by the rules.

These upstreams never answer (until the test is over), so the short timeouts below always fire,
however busy the machine: nothing here depends on how fast anything runs.
"""
import threading

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Hold
from portal.pricing import Usage, quote
from tests.proxy.conftest import CLAUDE
from tests.proxy.test_failures import MESSAGES_BODY, assert_anthropic_error, assert_nothing_charged, call
from tests.proxy.conftest import wait_for_records


@pytest.fixture
def app_config(app_config):
    return {**app_config, "UPSTREAM_FIRST_BYTE_TIMEOUT": 0.5, "UPSTREAM_IDLE_TIMEOUT": 0.5}


@pytest.fixture
def never():
    """An event the fake upstream waits on; set only once the test is over."""
    event = threading.Event()
    yield event
    event.set()


def test_hung_upstream_times_out_and_releases_the_hold(gateway, fake, key, never):
    fake.next(before_headers=never)
    assert_anthropic_error(call(gateway, key, "/v1/messages", MESSAGES_BODY), 504, "timeout_error",
                           "did not answer in time")
    assert_nothing_charged(gateway, key, "upstream_timeout")
    db.session.rollback()
    assert [h.status for h in db.session.scalars(select(Hold))] == ["released"]


def test_stream_gone_silent_times_out(gateway, fake, key):
    fake.next(hang_after_events=3)
    response = call(gateway, key, "/v1/messages", MESSAGES_BODY, stream=True)
    assert b"event: error" in response.content and b"timeout_error" in response.content
    [record] = wait_for_records(1)
    # message_start reported the input exactly; the one relayed delta ("Hello") is the output.
    assert (record.status, record.input_tokens, record.output_tokens) == ("upstream_timeout", 11, 2)
    assert record.cost == quote(CLAUDE, Usage(input=11, output=2))
