"""Two serving processes on one Postgres (and one Redis, when REDIS_URL is set), calls fired at
both at once on one account whose balance cannot cover them all.

The money rules are single conditional statements in the database, so no process can spend
what another has reserved: the balance never goes below zero, every call that succeeded is
charged exactly what it cost, every refused one nothing, and `flask ledger verify` (run as an
operator would, in a process of its own) finds the books clean.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from portal import apikeys, catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import Account
from portal.pricing import Usage, quote
from tests.factories import make_user
from tests.fake_upstream import OPENAI_KEY, Behaviour
from tests.processes import Serving, flask_command, serving_env
from tests.proxy.conftest import GPT, records

pytestmark = pytest.mark.slow

CALLS = 40
OUTPUT = 1_000
COST = quote(GPT, Usage(input=11, output=OUTPUT))  # 22 + 8,000 micro-dollars
# Each call holds its input bound and 1,000 output tokens (about $0.016), so this covers at
# most eleven calls one after another and about six at once: most of the forty are refused.
BALANCE = 100_000


@pytest.fixture
def shared_account(app, database, fake):
    if database.name != "postgres":
        pytest.skip("several processes on one database: the Postgres run (TEST_DATABASE_URL)")
    fake.default = Behaviour(output=OUTPUT)
    with atomic():
        catalog.add_upstream("fake-openai", "openai", fake.url + "/v1", OPENAI_KEY, allow_private_host=True)
        catalog.set_model("gpt-test", "fake-openai", GPT, upstream_model="gpt-upstream", max_output_tokens=4096)
    user = make_user("shared@example.com", credit=BALANCE)
    with atomic():
        _, key = apikeys.issue(user, "tests")
    return user.account.id, key


def test_two_processes_never_overdraw_one_account(app, tmp_path, shared_account):
    account_id, key = shared_account
    settings = {"WORKERS": 1, "SERVE_THREADS": 48, "PROXY_MAX_INFLIGHT": CALLS, "PROXY_MAX_INFLIGHT_PER_ACCOUNT": CALLS,
                "PROXY_MAX_INFLIGHT_PER_KEY": CALLS, "UPSTREAM_FIRST_BYTE_TIMEOUT": 60, "UPSTREAM_IDLE_TIMEOUT": 60}
    envs = [serving_env(app, tmp_path / name, **settings) for name in ("a", "b")]
    with Serving(envs[0]) as first, Serving(envs[1]) as second:
        servers = (first.wait_ready(), second.wait_ready())
        start = threading.Barrier(CALLS)

        def call(i: int) -> requests.Response:
            start.wait(60)
            return requests.post(servers[i % 2].url + "/v1/chat/completions", timeout=120,
                                 headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                                 json={"model": "gpt-test", "max_tokens": OUTPUT,
                                       "messages": [{"role": "user", "content": "hi"}]})

        with ThreadPoolExecutor(CALLS) as pool:
            answers = list(pool.map(call, range(CALLS)))
        for server in servers:
            assert server.stop() == 0, server.output

    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 402}, statuses
    succeeded = [r for r in answers if r.status_code == 200]
    assert succeeded and len(succeeded) < CALLS, "the balance covers some calls, not all"
    assert all(int(r.headers["X-Charge-Micro-USD"]) == COST for r in succeeded)

    db.session.rollback()
    account = db.session.scalar(select(Account).where(Account.id == account_id))
    assert (account.balance, account.held) == (BALANCE - COST * len(succeeded), 0)
    assert account.balance >= 0
    charged = [r for r in records() if r.status == "ok"]
    assert len(charged) == len(succeeded) and all(r.cost == COST for r in charged)

    verified = flask_command(envs[0], "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ledger ok" in verified.stdout
