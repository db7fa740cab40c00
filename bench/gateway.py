"""The gateway as production serves it: `flask --app wsgi serve`, in its own process, on a scratch database.

Its whole configuration comes from the environment made here (never the checkout's
instance/tollgate.env): WORKERS and SERVE_THREADS as the harness's own environment says unless a
scenario sets them, the periodic jobs off (an hourly job would land in one run and not another),
Prometheus's multiprocess files and the mail outbox in the harness's temporary folder. Calls in
flight per account and per key are allowed up to the process's whole PROXY_MAX_INFLIGHT: the
harness is one account, and the default (a quarter each) would refuse 16 clients with 429.
"""
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import requests

from .procs import Processes, family_pids, free_port, memory_kib, tail, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
ALL_OF_THE_PROCESS = "1000000"  # per account and per key: capped at PROXY_MAX_INFLIGHT (portal/config.py)
PASSED_THROUGH = ("WORKERS", "SERVE_THREADS", "PROXY_MAX_INFLIGHT", "SERVE_CONNECTION_LIMIT")


def base_env(folder: Path, database_url: str) -> dict:
    """The environment of a gateway command (serve, seed, ledger verify) on `database_url`."""
    folder.mkdir(parents=True, exist_ok=True)
    env_file = folder / "tollgate.env"
    env_file.write_text("")
    metrics = folder / "prometheus"
    metrics.mkdir(exist_ok=True)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TEST_", "PYTEST", "BENCH_")) and name not in ("DATABASE_URL", "REDIS_URL")}
    env.update({
        "TOLLGATE_ENV_FILE": str(env_file),
        "PORTAL_ENV": "development",
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "MAIL_OUTBOX": str(folder / "outbox"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "JOBS_INTERVAL_SECONDS": "0",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def serving_settings(overrides: dict) -> dict:
    """WORKERS, SERVE_THREADS, ... from the harness's environment, then the scenario's overrides."""
    settings = {name: os.environ[name] for name in PASSED_THROUGH if os.environ.get(name)}
    settings.update({"PROXY_MAX_INFLIGHT_PER_ACCOUNT": ALL_OF_THE_PROCESS, "PROXY_MAX_INFLIGHT_PER_KEY": ALL_OF_THE_PROCESS})
    settings.update({name: str(value) for name, value in overrides.items()})
    return settings


def effective(settings: dict) -> dict:
    """The serving settings the gateway will run with, defaults filled in as portal/config.py does."""
    threads = int(settings.get("SERVE_THREADS") or 48)
    inflight = int(settings.get("PROXY_MAX_INFLIGHT") or max(1, threads - 8))
    return {"WORKERS": int(settings.get("WORKERS") or os.cpu_count() or 1), "SERVE_THREADS": threads,
            "PROXY_MAX_INFLIGHT": inflight,
            "SERVE_CONNECTION_LIMIT": int(settings.get("SERVE_CONNECTION_LIMIT") or threads * 8)}


class Gateway:
    """One `serve` process (and its workers) on `database_url`, listening on a free loopback port."""

    def __init__(self, processes: Processes, folder: Path, name: str, database_url: str, settings: dict):
        self.processes, self.folder, self.name = processes, folder, name
        self.port = free_port()
        self.settings = settings
        self.env = {**base_env(folder, database_url), **settings, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "PUBLIC_URL": f"http://127.0.0.1:{self.port}"}
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 60.0) -> "Gateway":
        self.process = self.processes.start(self.name, [sys.executable, "-m", "flask", "--app", "wsgi", "serve"],
                                            env=self.env, cwd=ROOT)
        try:
            wait_for_port(self.port, timeout, self.process)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if requests.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("/healthz did not answer 200")
        except Exception as exc:
            raise RuntimeError(f"the gateway did not start: {exc}\n{tail(self.process.log_path)}") from None
        return self

    def memory(self) -> dict:
        """Resident memory of the serving processes now: VmRSS summed (as the kernel reports each), and Pss."""
        pids = family_pids(self.process.pid)
        per = [memory_kib(pid) for pid in pids]
        return {"processes": len(pids), "rss_kib": sum(r for r, _ in per), "pss_kib": sum(p for _, p in per),
                "rss_kib_each": [r for r, _ in per]}

    def stop(self) -> Optional[int]:
        """SIGTERM, as a service manager stops it (running calls get SERVE_GRACE_SECONDS to finish)."""
        if self.process is None:
            return None
        grace = float(self.env.get("SERVE_GRACE_SECONDS") or 20) + 10
        return self.processes.stop(self.process, grace=grace)

    def verify(self) -> dict:
        """`flask ledger verify` on this gateway's database: {"ok": bool, "output": its words}."""
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "ledger", "verify"], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=600)
        output = (done.stdout + done.stderr).strip()
        return {"ok": done.returncode == 0, "exit_code": done.returncode, "output": output}
