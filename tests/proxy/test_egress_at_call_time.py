"""At call time: the address is checked as the connection is made (DNS rebinding), a disabled upstream's
models answer "unavailable", and a credential that cannot be decrypted fails cleanly. Nothing is charged."""
import json
import logging

import requests

from portal import catalog, egress
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import Hold, HoldStatus
from tests.fake_upstream import OPENAI_KEY
from tests.proxy.conftest import CREDIT, GPT, balance, wait_for_records

CHAT = {"model": "rebind-model", "max_completion_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def call(gateway, key, body=CHAT, path="/v1/chat/completions", headers=None):
    return requests.post(f"{gateway}{path}", data=json.dumps(body), timeout=15,
                         headers={"Authorization": f"Bearer {key}", "content-type": "application/json",
                                  **(headers or {})})


def resolving(monkeypatch, answers: dict):
    """Make every name resolve to answers["ip"] (changeable while the test runs), as a DNS server would."""
    monkeypatch.setattr(egress, "resolver", lambda host, port: [(2, 1, 6, "", (answers["ip"], port))])


def add_named_upstream(fake, allow_private_host=False):
    port = fake.url.rsplit(":", 1)[1]
    with atomic():
        catalog.add_upstream("rebind", "openai", f"http://rebind.example:{port}/v1", OPENAI_KEY,
                             allow_private_host=allow_private_host)
        catalog.set_model("rebind-model", "rebind", GPT)


def assert_nothing_charged(gateway, key, record_status):
    [record] = wait_for_records(1)
    assert (record.status, record.cost, record.ledger_entry_id) == (record_status, 0, None)
    money = balance(gateway, key)
    assert (money["balance_micro_usd"], money["held_micro_usd"]) == (CREDIT, 0)
    db.session.rollback()
    assert {h.status for h in db.session.query(Hold)} == {HoldStatus.RELEASED.value}
    return record


def test_a_name_that_rebinds_to_loopback_is_refused_at_call_time(gateway, fake, key, monkeypatch, caplog):
    answers = {"ip": "93.184.216.34"}  # public when saved ...
    resolving(monkeypatch, answers)
    add_named_upstream(fake)
    answers["ip"] = "127.0.0.1"        # ... loopback when called
    with caplog.at_level(logging.WARNING, logger="proxy.upstreams.http"):
        response = call(gateway, key)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert "may not connect to this model's upstream" in error["message"] and "nothing was charged" in error["message"]
    assert "127.0.0.1" not in error["message"]  # the address is for the operator's log, not the caller
    assert fake.received == []                  # no connection was made
    record = assert_nothing_charged(gateway, key, "upstream_unreachable")
    assert record.http_status == 502
    assert "upstream rebind: refused to connect: rebind.example (127.0.0.1)" in caplog.text
    assert OPENAI_KEY not in caplog.text


def test_a_rebind_to_the_metadata_service_is_refused_even_when_private_hosts_are_allowed(gateway, fake, key,
                                                                                          monkeypatch):
    answers = {"ip": "127.0.0.1"}
    resolving(monkeypatch, answers)
    add_named_upstream(fake, allow_private_host=True)
    answers["ip"] = "169.254.169.254"
    response = call(gateway, key)
    assert response.status_code == 502 and "nothing was charged" in response.json()["error"]["message"]
    assert_nothing_charged(gateway, key, "upstream_unreachable")


def test_an_allowed_private_host_connects_to_the_address_it_checked(gateway, fake, key, monkeypatch):
    """rebind.example exists in no DNS: the call only works if the socket goes to the address our resolver gave."""
    resolving(monkeypatch, {"ip": "127.0.0.1"})
    add_named_upstream(fake, allow_private_host=True)
    response = call(gateway, key)
    assert response.status_code == 200, response.text
    assert len(fake.received) == 1 and fake.received[0].headers["host"].startswith("rebind.example")


def test_a_literal_loopback_saved_before_the_rules_is_refused_at_call_time(gateway, fake, key):
    """An upstream row that never went through the save-time check (older data, edited by hand)."""
    with atomic():
        catalog.add_upstream("rebind", "openai", "https://api.example.com/v1", OPENAI_KEY)
        catalog.set_model("rebind-model", "rebind", GPT)
        catalog.find_upstream("rebind").base_url = fake.url + "/v1"
    response = call(gateway, key)
    assert response.status_code == 502
    assert fake.received == []
    assert_nothing_charged(gateway, key, "upstream_unreachable")


def test_a_disabled_upstreams_models_are_unavailable_until_it_is_enabled(gateway, fake, key):
    chat = {**CHAT, "model": "gpt-test"}
    assert call(gateway, key, chat).status_code == 200  # the model is in the gateway's cache now
    with atomic():
        catalog.set_upstream_enabled("fake-openai", False, actor=Actor.cli(), reason="outage")
    response = call(gateway, key, chat)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and "paused its provider" in error["message"]
    models = requests.get(f"{gateway}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    ids = {m["id"] for m in models["data"]}
    assert "gpt-test" not in ids and {"claude-test", "echo-1"} <= ids
    claude = {"model": "claude-test", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    assert call(gateway, key, claude, path="/v1/messages").status_code == 200  # other upstreams are not touched
    with atomic():
        catalog.set_upstream_enabled("fake-openai", True, actor=Actor.cli())
    assert call(gateway, key, chat).status_code == 200
    assert len(wait_for_records(3)) == 3  # the refused call placed no hold and left no record


def test_a_credential_that_cannot_be_decrypted_fails_cleanly(app, gateway, fake, key, caplog):
    chat = {**CHAT, "model": "gpt-test"}
    app.config["SECRET_KEY"] = "not the key it was saved under"
    app.extensions["tollgate.gateway"].models.clear()
    with caplog.at_level(logging.ERROR):
        response = call(gateway, key, chat)
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert "cannot use this model's upstream credential" in message and "nothing was charged" in message
    assert "SECRET_KEY" not in message and "Traceback" not in response.text
    assert fake.received == []
    assert_nothing_charged(gateway, key, "upstream_unreachable")
    assert "upstream fake-openai: the stored upstream credential cannot be decrypted" in caplog.text
    assert "UPSTREAM_KEYS_SECRET" in caplog.text and OPENAI_KEY not in caplog.text
