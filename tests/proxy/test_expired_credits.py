"""Expired credit through the real proxy: refused by its date before any expiry job ran, in each API's shape."""
import json
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from portal import apikeys, ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, EntryKind, LedgerEntry, utcnow
from tests.factories import make_user
from tests.proxy.conftest import balance, records

CHAT_BODY = {"model": "gpt-test", "max_completion_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES_BODY = {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def call(gateway, key, path, body):
    return requests.post(f"{gateway}{path}", data=json.dumps(body), timeout=10,
                         headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})


def user_with_key(email: str, *, topup_days_ago: int | None, amount: int = 5_000_000) -> tuple[int, str]:
    user = make_user(email)
    with atomic():
        if topup_days_ago is None:
            ledger.credit(user.account.id, amount, EntryKind.GRANT, memo="grant")
        else:
            ledger.credit(user.account.id, amount, EntryKind.TOPUP, memo="card",
                          topup_at=utcnow() - timedelta(days=topup_days_ago))
        _, plaintext = apikeys.issue(user, "k")
    return user.account.id, plaintext


@pytest.fixture
def expired(app, catalog_ready):
    account_id, key = user_with_key("lapsed@example.com", topup_days_ago=400)
    db.session.rollback()
    return db.session.get(Account, account_id).credits_expire_at, key


def test_chat_completions_on_expired_credit_is_402_with_the_date(gateway, fake, expired):
    expires_at, key = expired
    response = call(gateway, key, "/v1/chat/completions", CHAT_BODY)
    assert response.status_code == 402, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("insufficient_quota", "credits_expired")
    assert error["message"] == (f"Your credits expired on {expires_at:%Y-%m-%d} (12 months after your last "
                                f"top-up). Top up at http://localhost/billing/ to use them again.")
    assert fake.received == [] and records() == []
    # No expiry job has run: the balance is all still there, just not usable.
    assert db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "expiry")).all() == []
    assert balance(gateway, key)["balance_micro_usd"] == 5_000_000


def test_messages_on_expired_credit_is_402_in_anthropic_shape(gateway, fake, expired):
    expires_at, key = expired
    response = call(gateway, key, "/v1/messages", MESSAGES_BODY)
    assert response.status_code == 402, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "billing_error"
    assert f"Your credits expired on {expires_at:%Y-%m-%d}" in body["error"]["message"]
    assert "http://localhost/billing/" in body["error"]["message"]
    assert fake.received == []


@pytest.mark.parametrize("path, body, stream", [
    ("/v1/responses", {"model": "gpt-test", "input": "hi", "max_output_tokens": 50}, False),
    ("/v1/embeddings", {"model": "gpt-test", "input": "hi"}, False),
    ("/v1/chat/completions", dict(CHAT_BODY, stream=True), True),
    ("/v1/messages", dict(MESSAGES_BODY, stream=True), True),
    ("/v1/chat/completions", dict(CHAT_BODY, model="echo-1"), False),  # the offline model too
])
def test_every_billed_route_refuses_expired_credit_before_the_upstream(gateway, fake, expired, path, body, stream):
    expires_at, key = expired
    response = call(gateway, key, path, body)
    assert response.status_code == 402, response.text
    assert response.headers["content-type"].startswith("application/json")  # an error, never a stream
    assert f"Your credits expired on {expires_at:%Y-%m-%d}" in response.text
    assert fake.received == [] and records() == []


def test_counting_tokens_is_free_and_still_answers_on_expired_credit(gateway, fake, expired):
    _, key = expired
    response = call(gateway, key, "/v1/messages/count_tokens", {"model": "claude-test",
                                                               "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text


def test_credit_topped_up_within_the_year_still_works(gateway, fake, app, catalog_ready):
    _, key = user_with_key("recent@example.com", topup_days_ago=300)
    fake.next(input=5, output=5)
    assert call(gateway, key, "/v1/chat/completions", CHAT_BODY).status_code == 200


def test_a_plain_402_names_the_billing_page(gateway, app, catalog_ready):
    _, key = user_with_key("poor@example.com", topup_days_ago=None, amount=100)
    for path, body in (("/v1/chat/completions", CHAT_BODY), ("/v1/messages", MESSAGES_BODY),
                       ("/v1/embeddings", {"model": "gpt-test", "input": "hi " * 200})):
        response = call(gateway, key, path, body)
        assert response.status_code == 402, response.text
        error = response.json()["error"]
        assert "Insufficient balance" in error["message"] and "http://localhost/billing/" in error["message"]
        assert "expired" not in error["message"]


def test_balance_shows_the_expiry(gateway, app, catalog_ready, expired):
    expires_at, key = expired
    money = balance(gateway, key)
    assert money["credits_expired"] is True
    assert money["credits_expire_at"] == expires_at.isoformat()
    db.session.rollback()
    last_topup = db.session.scalar(select(Account.last_topup_at).where(Account.credits_expire_at == expires_at))
    assert money["last_topup_at"] == last_topup.isoformat()

    _, fresh_key = user_with_key("fresh@example.com", topup_days_ago=1)
    assert balance(gateway, fresh_key)["credits_expired"] is False
    _, granted_key = user_with_key("granted@example.com", topup_days_ago=None)
    money = balance(gateway, granted_key)
    assert (money["credits_expired"], money["credits_expire_at"], money["last_topup_at"]) == (False, None, None)
