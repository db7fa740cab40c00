"""Per-minute limits on /v1 calls (portal/apilimits.py, proxy/rates.py): requests and tokens, per key
and per account; the 429 and the headers the SDKs read; failing open when Redis is gone."""
import re
import time
from datetime import datetime, timezone

import anthropic
import openai
import pytest
import requests
from sqlalchemy import select

from portal import apikeys, apilimits, metrics, ratelimit, users
from portal.apilimits import Overrides, Rates
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, ApiKey
from proxy import rates
from tests.factories import make_user
from tests.proxy.conftest import CREDIT, records

BODY = {"model": "gpt-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
CLAUDE = {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def call(gateway, key, body=BODY, path="/v1/chat/completions"):
    return requests.post(f"{gateway}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)


@pytest.fixture(autouse=True)
def mid_minute(monkeypatch):
    """The limits' clock stands still half-way through a minute: a test's calls share one window
    however slowly the machine runs them (windows are whole wall-clock minutes)."""
    moment = (time.time() // 60) * 60 + 30
    monkeypatch.setattr(apilimits, "clock", lambda: moment)
    return moment


def set_key(**values):
    with atomic():
        for key in db.session.scalars(select(ApiKey)):
            for name, value in values.items():
                setattr(key, name, value)


def set_account(**values):
    with atomic():
        for account in db.session.scalars(select(Account)):
            for name, value in values.items():
                setattr(account, name, value)


def refused_count(scope, limit):
    return metrics.RATE_LIMITED.labels(scope, limit)._value.get()


# -- arithmetic and headers, no HTTP ---------------------------------------------------------------

@pytest.mark.one_backend
def test_the_owner_lowers_never_raises_and_zero_means_none():
    config = {"RATE_LIMIT_RPM_PER_KEY": 100, "RATE_LIMIT_TPM_PER_KEY": 0, "RATE_LIMIT_RPM_PER_ACCOUNT": 300,
              "RATE_LIMIT_TPM_PER_ACCOUNT": 5000}
    assert apilimits.rates(config, Overrides()) == Rates(100, 0, 300, 5000)
    assert apilimits.rates(config, Overrides(own_rpm=10, own_tpm=50)) == Rates(10, 50, 300, 5000)
    assert apilimits.rates(config, Overrides(own_rpm=1000)).key_rpm == 100  # never above the operator's
    assert apilimits.rates(config, Overrides(key_rpm=0, account_rpm=0, account_tpm=7)) == Rates(0, 0, 0, 7)
    assert apilimits.owner_ceiling(config, Overrides()) == (100, 5000)  # the account's tokens bound the key
    assert apilimits.owner_ceiling(config, Overrides(key_rpm=0, account_rpm=0)) == (0, 5000)
    assert apilimits.concurrency(5, 5, 20, Overrides()) == (5, 5)
    assert apilimits.concurrency(5, 5, 20, Overrides(account_concurrency=12)) == (12, 12)
    assert apilimits.concurrency(5, 2, 20, Overrides(account_concurrency=12)) == (12, 2)
    assert apilimits.concurrency(5, 5, 20, Overrides(account_concurrency=99, key_concurrency=3)) == (20, 3)


@pytest.mark.one_backend
def test_header_formats():
    assert [rates.duration(s) for s in (0.02, 0.9994, 1, 1.2, 59.5, 60, 360)] == \
        ["20ms", "1000ms", "1s", "2s", "1m0s", "1m0s", "6m0s"]
    quota = apilimits.Quota(1, 2, Rates(10, 0, 0, 500), reset_at=1_800_000_060.0, requests=(10, 3), tokens=(500, 0))
    openai_headers = rates.headers(quota, "openai", now=1_800_000_042.5)
    assert openai_headers == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "3",
                              "x-ratelimit-reset-requests": "18s", "x-ratelimit-limit-tokens": "500",
                              "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "18s"}
    anthropic_headers = rates.headers(quota, "anthropic", now=1_800_000_042.5)
    assert anthropic_headers["anthropic-ratelimit-requests-reset"] == "2027-01-15T08:01:00Z"
    assert datetime.fromisoformat(anthropic_headers["anthropic-ratelimit-tokens-reset"]) == \
        datetime.fromtimestamp(1_800_000_060, timezone.utc)
    assert (anthropic_headers["anthropic-ratelimit-requests-limit"],
            anthropic_headers["anthropic-ratelimit-tokens-remaining"]) == ("10", "0")
    assert rates.headers(apilimits.Quota(1, 2, Rates(), 60.0), "openai") == {}  # nothing limited: no headers


def test_admission_counts_first_and_takes_back_refusals(app):
    limits = Rates(key_rpm=3, account_rpm=5)
    now = 1_800_000_010.0
    admitted = [apilimits.admit(1, 7, limits, now=now) for _ in range(3)]
    assert [q.requests for q in admitted] == [(3, 2), (3, 1), (3, 0)]
    with pytest.raises(apilimits.RateLimited) as refused:
        apilimits.admit(1, 7, limits, now=now)
    assert (refused.value.scope, refused.value.kind, refused.value.limit) == ("key", "requests", 3)
    # The refusal was taken back: the account's counter holds the 3 calls made, so another key has 2.
    assert apilimits.admit(1, 8, limits, now=now).requests == (5, 1)
    assert apilimits.admit(1, 8, limits, now=now).requests == (5, 0)
    with pytest.raises(apilimits.RateLimited) as refused:
        apilimits.admit(1, 8, limits, now=now)
    assert refused.value.scope == "account"
    assert apilimits.admit(1, 7, limits, now=now + 60).requests == (3, 2)  # the next minute starts afresh


def test_tokens_are_checked_at_admission_and_counted_at_settlement(app):
    limits = Rates(key_tpm=1000)
    now = 1_800_000_070.0
    quota = apilimits.admit(1, 7, limits, now=now)
    assert quota.tokens == (1000, 1000)
    apilimits.count_tokens(quota, 999, now=now)
    assert apilimits.admit(1, 7, limits, now=now).tokens == (1000, 1)  # under the limit: still admitted
    apilimits.count_tokens(quota, 1, now=now)
    with pytest.raises(apilimits.RateLimited) as refused:  # at the limit: refused until the minute ends
        apilimits.admit(1, 7, limits, now=now)
    assert refused.value.kind == "tokens"
    assert apilimits.admit(1, 7, limits, now=now + 60).tokens == (1000, 1000)


# -- through the gateway -----------------------------------------------------------------------------

@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATE_LIMIT_RPM_PER_KEY": 0, "RATE_LIMIT_RPM_PER_ACCOUNT": 0}


def test_requests_over_the_key_limit_get_429_in_openai_shape_with_headers(gateway, key, fake):
    set_key(rpm_limit=3)
    before = refused_count("key", "requests")
    answers = [call(gateway, key) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    ok, refused = answers[0], answers[3]
    assert (ok.headers["x-ratelimit-limit-requests"], ok.headers["x-ratelimit-remaining-requests"]) == ("3", "2")
    assert re.fullmatch(r"\d+s|1m0s|\d+ms", ok.headers["x-ratelimit-reset-requests"])
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "3 requests per minute" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused_count("key", "requests") == before + 2
    assert len(records()) == 3  # a refused call holds and records nothing
    assert len(fake.received) == 3


def test_the_account_limit_spans_its_keys(gateway, key):
    with atomic():
        user = db.session.scalar(select(ApiKey)).user
        _, second = apikeys.issue(user, "second")
    set_account(rpm_limit=2)
    assert [call(gateway, k).status_code for k in (key, second, second, key)] == [200, 200, 429, 429]


def test_tokens_per_minute_refuse_once_reached(gateway, key, fake):
    set_key(tpm_limit=10)  # the fake's answer charges more than 10 tokens
    first = call(gateway, key)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == "10"  # checked before this call's tokens
    used = records()[0]
    assert used.input_tokens + used.output_tokens > 10
    refused = call(gateway, key)
    assert refused.status_code == 429 and "10 tokens per minute" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


def test_anthropic_route_gets_anthropic_shape_and_headers(gateway, key):
    set_key(rpm_limit=1)
    ok = call(gateway, key, CLAUDE, "/v1/messages")
    assert ok.status_code == 200 and ok.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert "x-ratelimit-limit-requests" not in ok.headers
    refused = call(gateway, key, CLAUDE, "/v1/messages")
    assert refused.status_code == 429
    assert refused.json() == {"type": "error", "error": {"type": "rate_limit_error",
                                                          "message": refused.json()["error"]["message"]}}
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    reset = datetime.fromisoformat(refused.headers["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00"))
    assert 0 < (reset - datetime.now(timezone.utc)).total_seconds() <= 61
    assert int(refused.headers["retry-after"]) >= 1


def test_sdks_see_a_rate_limit_error(gateway, key):
    set_key(rpm_limit=1)
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
    client.chat.completions.create(**BODY)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**BODY)
    set_key(rpm_limit=None, tpm_limit=None)
    set_account(rpm_limit=1)
    claude = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    claude.messages.create(**CLAUDE)
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(**CLAUDE)


def test_the_owners_lower_limit_applies(gateway, key):
    set_key(rpm_limit=10, max_rpm=1)
    assert [call(gateway, key).status_code for _ in range(2)] == [200, 429]
    assert "can be raised in the portal" in call(gateway, key).json()["error"]["message"]


def test_account_concurrency_override_feeds_capacity(app, gateway, key):
    caller = apikeys.authenticate(key)
    gateway_object = app.extensions["tollgate.gateway"]
    per_account = gateway_object.capacity.limits.per_account
    slots = [gateway_object.capacity.take(caller) for _ in range(per_account)]
    set_account(concurrency_limit=per_account + 1)
    more = gateway_object.capacity.take(apikeys.authenticate(key))  # one more than the configured limit
    set_account(concurrency_limit=1)
    with pytest.raises(Exception) as refused:
        gateway_object.capacity.take(apikeys.authenticate(key))
    assert getattr(refused.value, "status", None) == 429 and "1 calls in progress" in refused.value.message
    for slot in slots + [more]:
        slot.release()


# -- Redis gone: everything keeps working ------------------------------------------------------------

@pytest.fixture
def redis_gone(app, monkeypatch):
    """The app's counters pointed at a closed port, as when Redis is down."""
    store = ratelimit.FailOpen(ratelimit.RedisCounters("redis://127.0.0.1:1/0", "x:"), "Redis")
    monkeypatch.setitem(app.extensions, "tollgate.counters", store)
    monkeypatch.setitem(app.extensions, "tollgate.counters.shared", store)
    return store


def test_redis_gone_limits_fail_open_to_this_process(app, gateway, key, redis_gone, caplog):
    set_key(rpm_limit=2)
    failures = metrics.REDIS_FAILURES.labels("ratelimit")._value.get()
    assert [call(gateway, key).status_code for _ in range(3)] == [200, 200, 429]  # still limited, per process
    assert metrics.REDIS_FAILURES.labels("ratelimit")._value.get() > failures
    assert ratelimit.redis_healthy(app) is False
    lines = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(lines) == 1  # logged once, not per request


def test_redis_gone_logins_and_signups_work(app, redis_gone):
    from tests.factories import PASSWORD
    from tests.web.helpers import publish_terms, register
    make_user("someone@example.com")
    publish_terms()
    signed_up = register(app.test_client())  # followed to the "check your inbox" page
    assert signed_up.status_code == 200 and signed_up.history[0].status_code in (302, 303)
    assert users.find_user("new@example.com") is not None
    assert app.test_client().post("/login", data={"email": "someone@example.com",
                                                  "password": PASSWORD}).status_code == 302
    assert redis_gone.healthy is False


def test_redis_healthy_is_none_without_redis(app):
    if app.config["REDIS_URL"]:
        assert ratelimit.redis_healthy(app) is True
    else:
        assert ratelimit.redis_healthy(app) is None


def test_credit_is_untouched_by_refusals(gateway, key):
    set_key(rpm_limit=1)
    call(gateway, key)
    db.session.rollback()
    balance = db.session.scalar(select(Account)).balance
    assert call(gateway, key).status_code == 429
    db.session.rollback()
    account = db.session.scalar(select(Account))
    assert (account.balance, account.held) == (balance, 0) and balance < CREDIT
