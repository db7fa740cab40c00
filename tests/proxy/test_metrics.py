"""/metrics through real waitress: protected, and its counters move by exactly what happened."""
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from portal import payments
from portal.extensions import db
from portal.models import Hold, HoldStatus
from tests.conftest import stripe_settings
from tests.factories import PASSWORD, make_user
from tests.proxy.conftest import records

TOKEN = "metrics-token-for-the-suite-0123456789"
CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "Hello there, how are you today?"}]}


@pytest.fixture
def app_config(fake_stripe):
    # The proxy tests' generous timeouts (tests/proxy/conftest.py), and a fake Stripe for the top-up.
    return {"UPSTREAM_CONNECT_TIMEOUT": 10.0, "UPSTREAM_FIRST_BYTE_TIMEOUT": 30.0, "UPSTREAM_IDLE_TIMEOUT": 30.0,
            "SERVE_THREADS": 24, "PROXY_MAX_INFLIGHT": 20, **stripe_settings(fake_stripe)}


def scrape(gateway: str, **headers) -> dict:
    """(metric sample name, sorted label pairs) -> value."""
    response = requests.get(f"{gateway}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def scrape_until(gateway: str, done) -> dict:
    deadline = time.monotonic() + 30
    while not done(samples := scrape(gateway)):
        assert time.monotonic() < deadline, "the metrics did not move"
        time.sleep(0.02)
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_a_call_moves_requests_and_charges_by_exact_amounts(gateway, key, fake):
    before = scrape(gateway)
    fake.next()
    answer = requests.post(f"{gateway}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"},
                           timeout=30)
    assert answer.status_code == 200
    [record] = records()
    assert record.cost > 0
    labels = {"route": "/v1/chat/completions", "model": "gpt-test", "status": "200"}
    # A request is counted when the server closes its response, just after the client has it.
    after = scrape_until(gateway, lambda now: value(now, "tollgate_requests_total", **labels)
                         > value(before, "tollgate_requests_total", **labels))
    assert value(after, "tollgate_charges_micro_usd_total", model="gpt-test") - \
        value(before, "tollgate_charges_micro_usd_total", model="gpt-test") == record.cost
    assert value(after, "tollgate_requests_total", **labels) - value(before, "tollgate_requests_total", **labels) == 1
    scrapes = {"route": "/metrics", "model": "", "status": "200"}
    assert value(after, "tollgate_requests_total", **scrapes) - value(before, "tollgate_requests_total", **scrapes) >= 1
    assert value(after, "tollgate_open_streams") == 0
    # The access line and the response share the call's id, which is the usage record's.
    assert answer.headers["X-Request-Id"] == record.request_id


def test_a_stream_is_counted_open_until_it_ends(gateway, key, fake):
    import threading
    gate = threading.Event()
    fake.next(gate=gate)
    stream = requests.post(f"{gateway}/v1/chat/completions", json={**CHAT, "stream": True},
                           headers={"Authorization": f"Bearer {key}"}, timeout=30, stream=True)
    lines = stream.iter_lines()
    assert next(lines)  # the first event is here; the fake waits on the gate before the second
    during = scrape(gateway)
    assert value(during, "tollgate_open_streams") == 1
    assert value(during, "tollgate_open_holds") == 1
    held = db.session.scalar(select(Hold.amount).where(Hold.status == HoldStatus.OPEN.value))
    assert value(during, "tollgate_open_holds_micro_usd") == held > 0
    gate.set()
    for _ in lines:
        pass
    stream.close()
    assert len(records()) == 1
    scrape_until(gateway, lambda now: value(now, "tollgate_open_streams") == 0 and value(now, "tollgate_open_holds") == 0)


def test_a_paid_top_up_is_counted(gateway, client, fake_stripe):
    make_user("payer@example.com")
    assert client.post("/login", data={"email": "payer@example.com", "password": PASSWORD}).status_code == 302
    before = scrape(gateway)
    assert client.post("/billing/checkout", data={"amount": "12"}).status_code == 303
    [session_id] = fake_stripe.sessions
    fake_stripe.pay(session_id)
    payments.handle_event(fake_stripe.session_event("checkout.session.completed", session_id))
    payments.handle_event(fake_stripe.session_event("checkout.session.completed", session_id))  # once only
    after = scrape(gateway)
    assert value(after, "tollgate_topups_micro_usd_total") - value(before, "tollgate_topups_micro_usd_total") \
        == 12_000_000


@pytest.mark.parametrize("header, status", [(None, 401), ("Bearer wrong-token-wrong-token-00", 401),
                                            (f"Basic {TOKEN}", 401), (f"Bearer {TOKEN}", 200)])
def test_a_token_protects_metrics(app, gateway, header, status):
    app.config["METRICS_TOKEN"] = TOKEN
    headers = {"Authorization": header} if header else {}
    answer = requests.get(f"{gateway}/metrics", headers=headers, timeout=10)
    assert answer.status_code == status
    assert (b"tollgate_requests_total" in answer.content) == (status == 200)


def test_without_a_token_only_loopback_may_scrape(client, app):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert refused.status_code == 403 and b"METRICS_TOKEN" in refused.data
    app.config["METRICS_TOKEN"] = TOKEN
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"},
                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
