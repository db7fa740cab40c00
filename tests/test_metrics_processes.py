"""/metrics of `serve` with WORKERS=2: one scrape adds up what every worker counted, and a worker that
dies takes its open streams out of the gauges but not its calls out of the counters.

Real processes (tests/processes.py) on the test's database. Which worker counted what is read from
the files prometheus_client's multiprocess mode keeps per process (counter_<pid>.db), each read
alone, so the test sees that both workers served calls and that the scrape is their sum.
"""
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from portal import apikeys, catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import UsageRecord
from portal.pricing import Price
from tests.factories import make_user
from tests.fake_upstream import OPENAI_KEY
from tests.processes import Serving, serving_env

pytestmark = pytest.mark.slow

CALL = {"model": "echo-1", "max_tokens": 16, "messages": [{"role": "user", "content": "count these words please"}]}
ROUTE = {"route": "/v1/chat/completions", "model": "echo-1", "status": "200"}
WATCHED = ("tollgate_requests_total", "tollgate_charges_micro_usd_total", "tollgate_open_streams")


@pytest.fixture
def key(app, fake):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("echo-1", "echo", Price(input=2_500_000, output=10_000_000), max_output_tokens=1024)
        catalog.add_upstream("fake-openai", "openai", fake.url + "/v1", OPENAI_KEY, allow_private_host=True)
        catalog.set_model("gpt-test", "fake-openai", Price(input=2_000_000, output=8_000_000),
                          upstream_model="gpt-upstream", max_output_tokens=4096)
    user = make_user("counted@example.com", credit=50_000_000)
    with atomic():
        return apikeys.issue(user, "tests")[1]


def samples(text: str) -> dict:
    """(sample name, sorted label pairs) -> value, from Prometheus's text format."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0)


def scrape(server: Serving) -> dict:
    answer = requests.get(server.url + "/metrics", timeout=30, headers={"Connection": "close"})
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


def scrape_until(server: Serving, done, what: str) -> dict:
    deadline = time.monotonic() + 60  # a request is counted as its response closes, just after the client has it
    while not done(found := scrape(server)):
        shown = {k: v for k, v in found.items() if k[0] in WATCHED}
        assert time.monotonic() < deadline, f"{what}; last scrape: {shown}\n{server.tail()}"
        time.sleep(0.05)
    return found


def counted_by(pid: int, metrics_dir: Path, scratch: Path) -> dict:
    """What worker `pid` alone counted: its counter file, read by itself."""
    alone = scratch / str(pid)
    alone.mkdir(parents=True, exist_ok=True)
    source = metrics_dir / f"counter_{pid}.db"
    if source.exists():
        shutil.copyfile(source, alone / source.name)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return samples(generate_latest(registry).decode())


def costs() -> list[int]:
    """The costs of the echo model's calls, from their usage records."""
    db.session.rollback()
    return list(db.session.scalars(select(UsageRecord.cost).where(
        UsageRecord.status == "ok", UsageRecord.model_id == catalog.find_model("echo-1").id)))


def call(server: Serving, key: str, body: dict = CALL) -> int:
    # A new connection each time: the kernel hands each to whichever worker accepts first.
    return requests.post(server.url + "/v1/chat/completions", json=body, timeout=60,
                         headers={"Authorization": f"Bearer {key}", "Connection": "close"}).status_code


def test_the_scrape_adds_up_every_workers_counts_and_keeps_a_dead_workers(app, tmp_path, key, fake):
    env = serving_env(app, tmp_path, WORKERS=2, SERVE_THREADS=16, PROXY_MAX_INFLIGHT=16,
                      PROXY_MAX_INFLIGHT_PER_ACCOUNT=16)
    metrics_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    with Serving(env) as server:
        server.wait_ready()
        pids = [int(server.wait_for(rf"worker {slot} started \(pid (\d+)\)").group(1)) for slot in (0, 1)]

        # Calls at once, in rounds, until each worker has answered some (the kernel decides who accepts).
        made = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in range(25):
                assert set(pool.map(lambda _: call(server, key), range(8))) == {200}
                made += 8
                each = [value(counted_by(pid, metrics_dir, tmp_path / "alone"), "tollgate_requests_total", **ROUTE)
                        for pid in pids]
                if all(each):
                    break
            assert all(each), f"one worker answered every call: {dict(zip(pids, each))}"

        charged = costs()
        assert len(charged) == made and all(cost > 0 for cost in charged)
        total = scrape_until(server, lambda now: value(now, "tollgate_requests_total", **ROUTE) >= made,
                             "the scrape did not count every call")
        assert value(total, "tollgate_requests_total", **ROUTE) == made
        assert value(total, "tollgate_charges_micro_usd_total", model="echo-1") == sum(charged)
        per_worker = [counted_by(pid, metrics_dir, tmp_path / "alone") for pid in pids]
        assert sum(value(w, "tollgate_requests_total", **ROUTE) for w in per_worker) == made
        assert sum(value(w, "tollgate_charges_micro_usd_total", model="echo-1") for w in per_worker) == sum(charged)

        # A stream held open in one worker, which is then killed: its calls stay counted, its stream does not.
        gate = threading.Event()
        fake.next(gate=gate)
        try:
            stream = requests.post(server.url + "/v1/chat/completions", stream=True, timeout=60,
                                   headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                                   json={"model": "gpt-test", "stream": True,
                                         "messages": [{"role": "user", "content": "hi"}]})
            assert stream.status_code == 200 and next(line for line in stream.iter_lines() if line)
            assert value(scrape(server), "tollgate_open_streams") == 1
            holder = next(pid for pid in pids if (metrics_dir / f"gauge_livesum_{pid}.db").exists()
                          and value(_gauges_of(pid, metrics_dir, tmp_path / "gauges"), "tollgate_open_streams") == 1)
            mark = len(server.lines)
            os.kill(holder, signal.SIGKILL)
            server.wait_for(r"worker \d started \(pid (\d+)\)", after=mark)  # restarted
            stream.close()
        finally:
            gate.set()
        after = scrape_until(server, lambda now: value(now, "tollgate_open_streams") == 0,
                             "the dead worker's open stream is still counted")
        assert value(after, "tollgate_requests_total", **ROUTE) == made  # the dead worker's calls are kept
        assert value(after, "tollgate_charges_micro_usd_total", model="echo-1") == sum(charged)
        assert (metrics_dir / f"counter_{holder}.db").exists()
        assert not (metrics_dir / f"gauge_livesum_{holder}.db").exists()

        # The restarted worker counts on, into the same total.
        assert call(server, key) == 200
        charged = costs()
        final = scrape_until(server, lambda now: value(now, "tollgate_requests_total", **ROUTE) >= made + 1,
                             "the call after the restart was not counted")
        assert value(final, "tollgate_requests_total", **ROUTE) == made + 1
        assert len(charged) == made + 1
        assert value(final, "tollgate_charges_micro_usd_total", model="echo-1") == sum(charged)
        assert server.stop() == 0


def _gauges_of(pid: int, metrics_dir: Path, scratch: Path) -> dict:
    """Worker `pid`'s live gauges alone."""
    alone = scratch / str(pid)
    alone.mkdir(parents=True, exist_ok=True)
    for source in metrics_dir.glob(f"gauge_*_{pid}.db"):
        shutil.copyfile(source, alone / source.name)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return samples(generate_latest(registry).decode())
