"""Per-key limits, enforced by the proxy with a clear 403 and nothing charged."""
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from portal import apikeys, catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, utcnow
from portal.pricing import Price
from tests.proxy.conftest import records

BODY = {"model": "gpt-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def app_config(app_config):
    # Twelve calls at once on one key: spend caps are under test here, not concurrency limits.
    return {**app_config, "PROXY_MAX_INFLIGHT_PER_ACCOUNT": 20}


def key_row() -> ApiKey:
    db.session.rollback()
    return db.session.scalar(select(ApiKey))


def set_limits(**limits):
    with atomic():
        apikeys.set_limits(db.session.scalar(select(ApiKey)), apikeys.Limits(**limits))


def call(gateway, key, body=BODY):
    return requests.post(f"{gateway}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                         timeout=10)


def test_allowed_models(gateway, key):
    set_limits(allowed_models=["claude-test"])
    refused = call(gateway, key)
    assert refused.status_code == 403 and "may not use the model 'gpt-test'" in refused.json()["error"]["message"]
    listed = requests.get(f"{gateway}/v1/models", headers={"x-api-key": key}, timeout=10).json()
    assert [m["id"] for m in listed["data"]] == ["claude-test"]
    assert records() == []


def test_ip_allow_list(gateway, key):
    set_limits(ip_allowlist="203.0.113.0/24")
    refused = call(gateway, key)
    assert refused.status_code == 403 and "may not be used from 127.0.0.1" in refused.json()["error"]["message"]
    set_limits(ip_allowlist="127.0.0.0/8\n::1")
    assert call(gateway, key).status_code == 200


def test_expired_key(gateway, key):
    with atomic():
        db.session.scalar(select(ApiKey)).expires_at = utcnow() - timedelta(seconds=1)
    refused = call(gateway, key)
    assert refused.status_code == 403 and "expired" in refused.json()["error"]["message"]


def test_total_spend_cap_counts_in_flight_holds(app, gateway, fake, key):
    with atomic():
        catalog.set_model("flat", "fake-openai", Price(input=0, output=10_000_000))
    body = {**BODY, "model": "flat"}  # each call holds and costs exactly 1,000 micro-dollars
    set_limits(spend_cap_total=5_000)
    for _ in range(12):
        fake.next(input=3, output=100, delay=0.01)
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = sorted(r.status_code for r in pool.map(lambda _: call(gateway, key, body), range(12)))
    assert statuses == [200] * 5 + [403] * 7
    row = key_row()
    assert (row.spent_total, row.held, row.spent_month) == (5_000, 0, 5_000)
    refused = call(gateway, key, body).json()["error"]
    assert refused["code"] == "spend_cap_reached" and "$0.005 total cap" in refused["message"]


def test_monthly_cap_resets_with_the_month(app, gateway, fake, key):
    with atomic():
        catalog.set_model("flat", "fake-openai", Price(input=0, output=10_000_000))
    body = {**BODY, "model": "flat"}
    set_limits(spend_cap_monthly=1_000)
    fake.next(input=3, output=100)
    assert call(gateway, key, body).status_code == 200
    refused = call(gateway, key, body)
    assert refused.status_code == 403 and "cap for" in refused.json()["error"]["message"]
    with atomic():
        db.session.scalar(select(ApiKey)).spent_month_key = "1999-01"  # last month's spend
    fake.next(input=3, output=100)
    assert call(gateway, key, body).status_code == 200
    row = key_row()
    assert (row.spent_month, row.spent_total) == (1_000, 2_000)


@pytest.mark.parametrize("status", [500])
def test_failed_calls_give_the_cap_back(gateway, fake, key, status):
    set_limits(spend_cap_total=10_000_000)
    fake.next(status=status)
    assert call(gateway, key).status_code == 502
    row = key_row()
    assert (row.spent_total, row.held) == (0, 0)
