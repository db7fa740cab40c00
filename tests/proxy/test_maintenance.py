"""Maintenance mode at the proxy: 503 with Retry-After in each API's error shape, nothing charged,
and the switch seen at once by the process that flipped it."""
import json
from datetime import timedelta

import openai
import pytest
import requests
from anthropic import Anthropic, APIStatusError
from openai import OpenAI

from portal import maintenance, sitesettings
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import SiteSetting, utcnow
from tests.proxy.conftest import CREDIT, balance, records

CHAT = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}


def turn_on(**kwargs):
    with atomic():
        assert maintenance.turn_on(Actor.cli(), **kwargs)


def turn_off():
    with atomic():
        assert maintenance.turn_off(Actor.cli())


def test_openai_calls_get_503_with_retry_after_and_nothing_is_charged(gateway, key):
    client = OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=20)
    assert client.chat.completions.create(**CHAT).choices[0].message.content == "Echo: hi"
    turn_on(message="Upgrading the database", until=utcnow() + timedelta(minutes=20))
    # No sleep: the change was committed in this process, which forgets its cached state at once.
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**CHAT)
    error = caught.value
    assert error.status_code == 503
    assert 1_190 <= int(error.response.headers["Retry-After"]) <= 1_200
    body = error.response.json()
    assert body["error"]["code"] == "maintenance" and body["error"]["type"] == "server_error"
    assert "down for maintenance until" in body["error"]["message"] and "Upgrading the database." in \
        body["error"]["message"] and "nothing was charged" in body["error"]["message"]
    with pytest.raises(openai.APIStatusError):
        client.embeddings.create(model="echo-1", input="x")
    with pytest.raises(openai.APIStatusError):
        client.models.list()
    assert len(records()) == 1  # only the call before maintenance
    before = CREDIT - records()[0].cost

    turn_off()
    assert client.chat.completions.create(**CHAT).choices[0].message.content == "Echo: hi"
    assert balance(gateway, key)["balance_micro_usd"] < before  # charged again once it is over


def test_anthropic_calls_get_the_anthropic_shape(gateway, key):
    turn_on()
    with Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=20) as client:
        with pytest.raises(APIStatusError) as caught:
            client.messages.create(model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    response = caught.value.response
    assert response.status_code == 503
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "overloaded_error"
    # Without an end time, clients are told to come back in five minutes.
    assert response.headers["Retry-After"] == str(maintenance.DEFAULT_RETRY_SECONDS)
    assert records() == []


def test_a_call_without_a_key_is_told_about_maintenance_too(gateway):
    turn_on(message="Back at noon")
    response = requests.post(f"{gateway}/v1/chat/completions", json=CHAT, timeout=10)
    assert response.status_code == 503 and response.json()["error"]["code"] == "maintenance"


def test_maintenance_past_its_end_time_lets_calls_through(gateway, key):
    # Stored as it would be had it been switched on an hour ago until a minute ago.
    state = maintenance.State(since=utcnow() - timedelta(hours=1), until=utcnow() - timedelta(minutes=1), message="")
    with atomic():
        sitesettings.put(maintenance.KEY, json.dumps(state.as_dict()))
    client = OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=20)
    assert client.chat.completions.create(**CHAT).choices[0].message.content == "Echo: hi"


def test_other_processes_see_the_switch_within_the_cache_time(app, monkeypatch):
    """A change made elsewhere (here: a row written behind this process's back) shows once the cache
    expires; the clock is moved forward instead of sleeping."""
    assert maintenance.current() is None  # read, and cached
    with db.engine.begin() as connection:  # another process's commit: no invalidation here
        connection.execute(SiteSetting.__table__.insert().values(
            key=maintenance.KEY, value=json.dumps({"since": utcnow().isoformat(), "until": None, "message": "x"}),
            updated_at=utcnow()))
    assert maintenance.current() is None  # still the cached "off"
    clock = sitesettings.time.monotonic() + sitesettings.CACHE_SECONDS + 0.01
    monkeypatch.setattr(sitesettings.time, "monotonic", lambda: clock)
    assert maintenance.current() is not None


def test_a_rolled_back_change_leaves_the_cache_alone(app):
    assert maintenance.current() is None
    with pytest.raises(RuntimeError):
        with atomic():
            maintenance.turn_on(Actor.cli())
            raise RuntimeError("changed my mind")
    sitesettings.invalidate()
    assert maintenance.current() is None
