"""Proxy overhead: the same calls sent straight to an upstream and through the gateway.

The gateway runs as its own process (`flask serve`, as in production) on a scratch SQLite
database; the upstream is the test suite's fake on loopback, answering instantly, so the
difference is what the gateway adds: authentication, the hold, forwarding, settlement and the
usage record. Usage: python -m bench.proxy_bench [--calls 400]
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.fake_upstream import OPENAI_KEY, FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "bench", "max_tokens": 64, "messages": [{"role": "user", "content": "hello " * 50}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(session: requests.Session, url: str, headers: dict, body: dict, calls: int, stream: bool) -> list[float]:
    """Milliseconds per call (to the whole body, or to the first event when streaming)."""
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        response = session.post(url, json={**body, "stream": stream}, headers=headers, stream=stream, timeout=30)
        assert response.status_code == 200, response.text
        if stream:
            next(response.iter_content(None))
            samples.append((time.perf_counter() - started) * 1000)
            response.content
        else:
            response.content
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> str:
    samples = sorted(samples)
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
    return f"p50 {statistics.median(samples):6.2f} ms   p90 {p(0.9):6.2f} ms   p99 {p(0.99):6.2f} ms"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    fake = FakeUpstream().start()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp}/bench.db", SECRET_KEY="bench", PORT=str(port),
                   PYTHONPATH=str(ROOT))
        flask = [sys.executable, "-m", "flask", "--app", "wsgi"]

        def run(*cli_args):
            return subprocess.run([*flask, *cli_args], cwd=ROOT, env=env, check=True, capture_output=True,
                                  text=True).stdout

        run("db", "upgrade")
        run("users", "create", "bench@example.com", "--verified")
        run("credits", "grant", "bench@example.com", "100000", "--reason", "bench")
        key = run("keys", "create", "bench@example.com").strip().splitlines()[-1]
        run("upstreams", "add", "fake", "--protocol", "openai", "--base-url", fake.url + "/v1", "--api-key", OPENAI_KEY,
            "--allow-private-host")
        run("upstreams", "add", "echo", "--protocol", "echo")
        run("models", "set", "bench", "--upstream", "fake", "--input", "1", "--output", "2")
        run("models", "set", "bench-echo", "--upstream", "echo", "--input", "1", "--output", "2")
        server = subprocess.Popen([*flask, "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            gateway = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    requests.get(f"{gateway}/healthz", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            session = requests.Session()
            ours = {"Authorization": f"Bearer {key}"}
            theirs = {"Authorization": f"Bearer {OPENAI_KEY}"}
            timed(session, f"{gateway}/v1/chat/completions", ours, BODY, 30, False)  # warm up
            print(f"{args.calls} sequential calls each, one client, loopback; gateway on SQLite")
            for stream in (False, True):
                kind = "stream, to first byte" if stream else "complete response"
                direct = timed(session, f"{fake.url}/v1/chat/completions", theirs, BODY, args.calls, stream)
                proxied = timed(session, f"{gateway}/v1/chat/completions", ours, BODY, args.calls, stream)
                print(f"  {kind:24} upstream direct : {summary(direct)}")
                print(f"  {kind:24} via gateway     : {summary(proxied)}")
                print(f"  {kind:24} added (p50)     : {statistics.median(proxied) - statistics.median(direct):6.2f} ms")
            echo = timed(session, f"{gateway}/v1/chat/completions", ours, {**BODY, "model": "bench-echo"},
                         args.calls, False)
            print(f"  echo model, whole call   via gateway     : {summary(echo)}")
            print(run("ledger", "verify").strip())
        finally:
            server.terminate()
            server.wait(timeout=10)
            fake.stop()


if __name__ == "__main__":
    main()
