"""`serve` with WORKERS=2: one listening socket shared by two forked workers, a dead worker
restarted, and everything stopped by SIGTERM (exit 0).

Real processes (tests/processes.py). Which worker holds which socket is read from /proc: each
worker must hold the very socket the parent bound, not one of its own on the same port.
"""
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from portal import apikeys, catalog
from portal.database import atomic
from portal.pricing import Price
from tests.factories import make_user
from tests.fake_upstream import OPENAI_KEY
from tests.processes import Serving, serving_env

pytestmark = [pytest.mark.slow, pytest.mark.one_backend]  # how processes are run, not what the database does


def listening_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return inode
    raise AssertionError(f"nothing listens on port {port}")


def socket_inodes(pid: int) -> set:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def all_healthy(url: str, count: int = 20) -> bool:
    # A new connection each time: the kernel hands each to whichever worker accepts first.
    return all(requests.get(url + "/healthz", timeout=30, headers={"Connection": "close"}).status_code == 200
               for _ in range(count))


def test_workers_share_one_socket_are_restarted_and_stop_on_sigterm(app, tmp_path):
    env = serving_env(app, tmp_path, WORKERS=2, JOBS_INTERVAL_SECONDS=3600)
    port = int(env["PORT"])
    with Serving(env) as server:
        server.wait_ready()
        assert "(development, 2 processes of" in server.wait_for(r"serving on ").string
        workers = {slot: int(server.wait_for(rf"worker {slot} started \(pid (\d+)\)").group(1)) for slot in (0, 1)}
        inode = listening_inode(port)
        for pid in workers.values():
            assert parent_of(pid) == server.process.pid
            assert inode in socket_inodes(pid), "each worker accepts on the socket its parent bound"
        assert all_healthy(server.url)
        server.wait_for(r"^expiry job: every 3600 seconds")

        mark = len(server.lines)
        os.kill(workers[1], signal.SIGKILL)
        restarted = int(server.wait_for(r"worker 1 started \(pid (\d+)\)", after=mark).group(1))
        assert restarted not in workers.values()
        assert parent_of(restarted) == server.process.pid and inode in socket_inodes(restarted)
        assert alive(workers[0]), "the other worker goes on serving"
        assert all_healthy(server.url)

        assert server.stop() == 0
        assert "stopped" in server.lines
    # Worker 0 alone runs the periodic jobs (their database claim still guards other machines).
    assert sum(line.startswith("expiry job:") for line in server.lines) == 1, server.output
    assert not any(alive(pid) for pid in (workers[0], restarted))


@pytest.fixture
def key(app, fake):
    with atomic():
        catalog.add_upstream("fake-openai", "openai", fake.url + "/v1", OPENAI_KEY, allow_private_host=True)
        catalog.set_model("gpt-test", "fake-openai", Price(input=2_000_000, output=8_000_000),
                          upstream_model="gpt-upstream", max_output_tokens=4096)
    user = make_user("caller@example.com", credit=10_000_000)
    with atomic():
        return apikeys.issue(user, "tests")[1]


def test_sigterm_lets_a_running_request_finish(app, tmp_path, fake, key):
    """A worker told to stop stops accepting but finishes what it is serving (SERVE_GRACE_SECONDS)."""
    release = threading.Event()
    fake.next(before_headers=release)
    env = serving_env(app, tmp_path, WORKERS=2, SERVE_GRACE_SECONDS=60)
    with Serving(env) as server:
        server.wait_ready()
        answer = {}

        def call():
            answer["response"] = requests.post(
                server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 60
        while not fake.received:  # the call is in a worker, waiting on the upstream
            assert time.monotonic() < deadline, f"the call never reached the upstream; output:\n{server.output}"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        server.wait_for(r"stopping: 1 request\(s\) still running")  # that worker has stopped accepting
        release.set()
        caller.join(60)
        assert server.process.wait(60) == 0
    assert answer["response"].status_code == 200, server.output
    assert answer["response"].json()["usage"]["completion_tokens"] == 7
