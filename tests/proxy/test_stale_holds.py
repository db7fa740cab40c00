"""A serving process killed mid-stream leaves its call's hold open: the sweep releases it, charges
nothing, and records the call `abandoned` (calls.release_stale, from cron or the periodic jobs)."""
import os
import re
import signal
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from portal import calls, catalog, expiry
from portal.extensions import db
from portal.models import Account, ApiKey, Hold, UsageRecord, utcnow
from tests.processes import Serving, flask_command, serving_env

from tests.proxy.conftest import CREDIT


def _open_holds() -> list[Hold]:
    db.session.rollback()
    return list(db.session.scalars(select(Hold).where(Hold.status == "open")))


def _wait_for_open_hold(timeout: float = 60.0) -> Hold:
    deadline = time.monotonic() + timeout
    while not (found := _open_holds()):
        assert time.monotonic() < deadline, "no hold was opened"
        time.sleep(0.05)
    return found[0]


def _assert_released_and_abandoned(hold_id: int) -> None:
    db.session.rollback()
    hold = db.session.get(Hold, hold_id)
    assert hold.status == "released"
    account = db.session.get(Account, hold.account_id)
    assert (account.balance, account.held) == (CREDIT, 0)  # nothing charged, nothing held
    assert db.session.scalar(select(ApiKey.held)) == 0
    record = db.session.scalars(select(UsageRecord)).one()
    assert record.status == "abandoned" and record.cost == 0 and record.ledger_entry_id is None
    assert record.hold_id == hold_id and record.streamed and record.route
    assert record.model_id == catalog.find_model("gpt-test").id


def _kill_mid_stream(app, fake, key, tmp_path) -> tuple[dict, int]:
    """Serve one stream, SIGKILL the serving process group once it has begun; its env and the open hold's id."""
    gate = threading.Event()
    fake.next(gate=gate, output=500)  # one event, then silence until the test is done
    env = serving_env(app, tmp_path, WORKERS=1, JOBS_INTERVAL_SECONDS=0)
    try:
        with Serving(env) as server:
            server.wait_ready()
            response = requests.post(f"{server.url}/v1/chat/completions", stream=True, timeout=60,
                                     headers={"Authorization": f"Bearer {key}"},
                                     json={"model": "gpt-test", "stream": True,
                                           "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 200
            first = next(line for line in response.iter_lines() if line)  # the stream has begun
            assert first.startswith(b"data:")
            hold = _wait_for_open_hold()
            os.killpg(server.process.pid, signal.SIGKILL)  # the whole serving process group, mid-stream
            server.process.wait(60)
            response.close()
    finally:
        gate.set()
    assert [h.id for h in _open_holds()] == [hold.id]  # nobody settled it
    return env, hold.id


def _verify_in_a_process(env: dict) -> None:
    verified = flask_command(env, "ledger", "verify")
    assert verified.returncode == 0 and "ledger ok" in verified.stdout, verified.stdout + verified.stderr


def test_a_killed_stream_is_released_and_recorded_abandoned(app, fake, key, tmp_path):
    env, hold_id = _kill_mid_stream(app, fake, key, tmp_path)
    swept = flask_command(env, "ledger", "release-stale", "--older-than-seconds", "0")
    assert swept.returncode == 0, swept.stderr
    assert f"released 1 stale hold(s): {hold_id}" in swept.stdout
    _verify_in_a_process(env)
    _assert_released_and_abandoned(hold_id)


def test_a_restarted_server_sweeps_the_killed_streams_hold_by_itself(app, fake, key, tmp_path):
    """No operator command: the restarted process's periodic jobs release the hold once it is stale."""
    env, hold_id = _kill_mid_stream(app, fake, key, tmp_path)
    # Stale after 2 s (it must outlast the first-byte wait, here 1 s), swept every second.
    restart = {**env, "JOBS_INTERVAL_SECONDS": "1", "UPSTREAM_FIRST_BYTE_TIMEOUT": "1", "STALE_HOLD_SECONDS": "2"}
    with Serving(restart) as server:
        server.wait_ready()
        server.wait_for(r"^expiry job: every 1 seconds")  # the timer runs its first round at once
        deadline = time.monotonic() + 120  # generous: a busy machine may delay a round or two
        while _open_holds():
            assert time.monotonic() < deadline, f"the periodic sweep released nothing\n{server.tail()}"
            time.sleep(0.1)
        server.wait_for(rf"released stale hold {hold_id} ")
        # The killed process's stream is not counted open by its successor (same metrics folder).
        scraped = requests.get(server.url + "/metrics", timeout=30).text
        assert re.search(r"^tollgate_open_streams 0\.0$", scraped, re.M), scraped
        assert re.search(r"^tollgate_open_holds 0\.0$", scraped, re.M), scraped
        assert server.stop() == 0
    _assert_released_and_abandoned(hold_id)
    _verify_in_a_process(env)


def test_the_periodic_jobs_release_holds_past_stale_hold_seconds(app, key):
    caller_model = catalog.serving_model("gpt-test")
    from portal import apikeys
    call = calls.open_call("req_killed", apikeys.authenticate(key), caller_model, calls.Usage(input=100, output=50),
                           calls.Bounds(100, 50), client_ip="192.0.2.1", route="chat", streamed=True)
    expiry.other_jobs(app, utcnow())
    assert [h.id for h in _open_holds()] == [call.hold_id]  # a running call's hold is left alone
    expiry.other_jobs(app, utcnow() + timedelta(seconds=app.config["STALE_HOLD_SECONDS"] + 1))
    assert _open_holds() == []
    _assert_released_and_abandoned(call.hold_id)
    assert db.session.scalars(select(UsageRecord)).one().client_ip is None  # addresses are not kept on holds


@pytest.mark.one_backend
def test_release_stale_takes_seconds_or_minutes(app, cli):
    assert "released 0" in cli("ledger", "release-stale", "--older-than-seconds", "0").output
    assert "released 0" in cli("ledger", "release-stale", "--older-than-minutes", "5").output
    assert "released 0" in cli("ledger", "release-stale").output
    both = cli("ledger", "release-stale", "--older-than-seconds", "1", "--older-than-minutes", "1")
    assert both.exit_code != 0 and "not both" in both.output


@pytest.mark.one_backend
def test_stale_hold_seconds_must_outlast_the_first_byte_wait(tmp_path):
    from portal.config import ConfigError, load

    assert load(str(tmp_path), {})["STALE_HOLD_SECONDS"] == 3 * 3600
    assert load(str(tmp_path), {"STALE_HOLD_SECONDS": "700"})["STALE_HOLD_SECONDS"] == 700
    with pytest.raises(ConfigError, match="STALE_HOLD_SECONDS must exceed UPSTREAM_FIRST_BYTE_TIMEOUT"):
        load(str(tmp_path), {"STALE_HOLD_SECONDS": "600"})
    with pytest.raises(ConfigError, match="STALE_HOLD_SECONDS"):
        load(str(tmp_path), {"STALE_HOLD_SECONDS": "7200", "UPSTREAM_FIRST_BYTE_TIMEOUT": "7200"})
