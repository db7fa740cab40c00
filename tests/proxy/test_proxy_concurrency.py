"""Fifty parallel calls, half streamed, on a balance that covers exactly twenty."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from portal import apikeys, catalog, ledger
from portal.database import atomic
from portal.extensions import db
from portal.pricing import Price
from tests.factories import make_user
from tests.proxy.conftest import wait_for_records

# Input is free and every call reports exactly its max output, so each success costs exactly
# what it held: the number of successes cannot depend on timing.
FLAT = Price(input=0, output=10_000_000)
MAX_TOKENS = 100
PER_CALL = 1_000  # 100 tokens at $10 per million
COVERED = 20


@pytest.fixture
def app_config():
    return {"SERVE_THREADS": 64, "PROXY_MAX_INFLIGHT": 60, "PROXY_MAX_INFLIGHT_PER_ACCOUNT": 60,
            "UPSTREAM_FIRST_BYTE_TIMEOUT": 60.0,
            "UPSTREAM_IDLE_TIMEOUT": 60.0}  # safety nets only: a busy machine is slow


@pytest.mark.parametrize("path, model", [("/v1/chat/completions", "flat-openai"), ("/v1/messages", "flat-claude")])
def test_parallel_calls_never_overdraw(app, catalog_ready, gateway, fake, path, model):
    with atomic():
        catalog.set_model("flat-openai", "fake-openai", FLAT)
        catalog.set_model("flat-claude", "fake-anthropic", FLAT)
    user = make_user("racer@example.com", credit=PER_CALL * COVERED)
    with atomic():
        _, key = apikeys.issue(user, "race")
    for _ in range(50):
        fake.next(input=37, output=MAX_TOKENS, delay=0.01)

    def one(i: int):
        body = {"model": model, "max_tokens": MAX_TOKENS, "stream": i % 2 == 0,
                "messages": [{"role": "user", "content": "go"}]}
        response = requests.post(f"{gateway}{path}", json=body, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60)
        return response.status_code, response.content

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(one, range(50)))
    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [200] * COVERED + [402] * (50 - COVERED), statuses
    done = wait_for_records(COVERED)
    assert len(done) == COVERED and all(r.status == "ok" and r.cost == PER_CALL for r in done)
    assert len(fake.received) == COVERED  # refused calls never reached the upstream
    account = user.account
    db.session.refresh(account)
    assert (account.balance, account.held) == (0, 0)
    assert ledger.verify() == []
