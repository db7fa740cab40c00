"""Two serving processes share one rate limit: on the real Redis, and in the database without it.

Each process is `flask --app wsgi serve` (WORKERS=1) on its own port, on the test's Postgres
database. A burst of calls over the key's limit, spread across both, gets exactly the limit through
and a 429 for every other call: counters each process kept alone would let twice the limit through.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from portal import apikeys
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey
from tests.processes import Serving, serving_env

LIMIT, BURST = 5, 14
BODY = {"model": "echo-1", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def postgres(database):
    if database.name != "postgres":
        pytest.skip("serving processes share a Postgres database here (TEST_DATABASE_URL)")


def burst(urls: list, key: str) -> list[int]:
    """BURST calls at once, alternating between the processes; their statuses."""
    def one(i):
        return requests.post(f"{urls[i % len(urls)]}/v1/chat/completions", json=BODY,
                             headers={"Authorization": f"Bearer {key}"}, timeout=60).status_code

    with ThreadPoolExecutor(BURST) as pool:
        return list(pool.map(one, range(BURST)))


def shared_limit(app, tmp_path, key, **settings) -> list[int]:
    """The statuses of a burst that ran inside one minute's window (the limit's unit).

    A burst that straddles two minutes is counted in both, so it proves nothing: it is run again on
    a fresh key (fresh counters) rather than waiting for the clock, whatever the machine's speed."""
    env = [serving_env(app, tmp_path, WORKERS=1, RATE_LIMIT_RPM_PER_ACCOUNT=0, **settings) for _ in range(2)]
    with Serving(env[0]) as first, Serving(env[1]) as second:
        first.wait_ready(), second.wait_ready()
        for attempt in range(5):
            with atomic():
                row = db.session.scalar(select(ApiKey).order_by(ApiKey.id).limit(1))
                if attempt:
                    row, key = apikeys.issue(row.user, f"burst {attempt}")
                row.rpm_limit = LIMIT
            minute = time.time() // 60
            statuses = burst([first.url, second.url], key)
            if time.time() // 60 == minute:
                return statuses
    pytest.fail("every burst straddled a minute's end")


def test_two_processes_share_one_limit_on_redis(app, tmp_path, postgres, key):
    if not app.config["REDIS_URL"]:
        pytest.skip("REDIS_URL is not set: the shared Redis store cannot be tested")
    statuses = shared_limit(app, tmp_path, key)
    assert sorted(statuses) == [200] * LIMIT + [429] * (BURST - LIMIT)


def test_two_processes_share_one_limit_in_the_database(app, tmp_path, postgres, key):
    statuses = shared_limit(app, tmp_path, key, REDIS_URL="", RATE_LIMIT_STORE="database")
    assert sorted(statuses) == [200] * LIMIT + [429] * (BURST - LIMIT)
