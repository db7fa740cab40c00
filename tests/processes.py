"""Serving processes for tests: `flask --app wsgi serve` run as an operator runs it, in a process of its own.

    with Serving(serving_env(app, WORKERS=2)) as server:
        requests.get(server.url + "/healthz")

The process reads its whole configuration from the environment (`serving_env` copies the test
app's database, Redis and secret), prints what it does on stdout, which is collected line by line
(`wait_for` a line), and is stopped with SIGTERM (and killed if it will not stop).

Its output (and an operator command's) goes to a log file in the test's tmp folder, not to
pytest's: a failure message quotes the last lines only (`tail`), and the tail is printed when the
process stops, so pytest shows it under "Captured stdout" of a failing test and nowhere else.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
TAIL_LINES = 60  # of a process's output, in failure messages


def free_port() -> int:
    """A port nothing listens on now (`serve` needs a number; the moment until it binds is short)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serving_env(app, tmp_path: Path, **settings) -> dict:
    """The environment of a serving process on the test app's database and Redis keys; `settings` add to it."""
    config = app.config
    metrics_dir = tmp_path / f"prometheus-{time.monotonic_ns()}"
    metrics_dir.mkdir(parents=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYTEST", "TEST_"))}
    env.update({
        "PORTAL_ENV": "development",
        "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": config["SECRET_KEY"],
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "REDIS_URL": config["REDIS_URL"],
        "REDIS_PREFIX": config["REDIS_PREFIX"],
        "MAIL_OUTBOX": str(tmp_path / "outbox"),
        "JOBS_INTERVAL_SECONDS": "0",
        # Never the shared instance folder's: another test's serving process may be using that one.
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONUNBUFFERED": "1",
    })
    env["PUBLIC_URL"] = f"http://127.0.0.1:{env['PORT']}"
    # Not the checkout's instance/tollgate.env: only what the test sets.
    env_file = tmp_path / f"tollgate-{env['PORT']}.env"
    env_file.write_text("")
    env["TOLLGATE_ENV_FILE"] = str(env_file)
    env.update({name: str(value) for name, value in settings.items()})
    return env


def log_path(env: dict, name: str) -> Path:
    """A new file for a process's output, beside the env file `serving_env` made in the test's tmp folder."""
    folder = Path(env["TOLLGATE_ENV_FILE"]).parent if env.get("TOLLGATE_ENV_FILE") else Path(tempfile.gettempdir())
    folder = folder / "process-logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{time.monotonic_ns()}.log"


def tail(lines: list[str], path: Path, count: int = TAIL_LINES) -> str:
    """The last `count` lines, saying where the rest is."""
    shown = lines[-count:]
    skipped = f"[{len(lines) - len(shown)} earlier line(s) in {path}]\n" if len(lines) > len(shown) else ""
    return f"--- output of {path.name} ---\n{skipped}" + "\n".join(shown)


class Serving:
    """`flask --app wsgi serve` in its own process (and session), its output collected as it comes."""

    def __init__(self, env: dict, command: tuple = ("serve",)):
        self.env = env
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.lines: list[str] = []
        self.log_path = log_path(env, "-".join(command))
        self._log = self.log_path.open("w", encoding="utf-8")
        self._changed = threading.Condition()
        self._shown = False
        self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", *command], cwd=ROOT,
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with self.process.stdout, self._log:
            for line in self.process.stdout:
                self._log.write(line)
                self._log.flush()
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        """Everything it printed so far (tests read it; failure messages quote `tail()`)."""
        return "\n".join(self.lines)

    def tail(self, count: int = TAIL_LINES) -> str:
        """Its last `count` lines of output, naming the log file that has them all."""
        return tail(list(self.lines), self.log_path, count)

    def show_tail(self) -> None:
        """Print the tail once: pytest shows a test's captured stdout only when the test fails."""
        if not self._shown:
            self._shown = True
            if self.process.poll() is not None:
                self._reader.join(5)  # its last lines, unless a stray child still holds the pipe
            print(self.tail())

    def wait_for(self, pattern: str, timeout: float = 60.0, after: int = 0) -> re.Match:
        """The first line from index `after` on matching `pattern`; fails with the output so far."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    found = regex.search(line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reading()):
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s\n{self.tail()}")
                self._changed.wait(min(left, 0.5))

    def _reading(self) -> bool:
        return not self.process.stdout.closed

    def wait_ready(self, timeout: float = 60.0) -> "Serving":
        """Wait until it answers /healthz."""
        import requests

        self.wait_for(r"serving on ", timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"{self.url} did not become healthy\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60.0) -> Optional[int]:
        """SIGTERM, then the exit code; SIGKILL to the whole group if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise AssertionError(f"serve did not stop on SIGTERM within {timeout} s\n{self.tail()}")
        finally:
            self._cleanup()
            self.show_tail()

    def _cleanup(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # any worker left behind by a failed test
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> "Serving":
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            try:
                self.stop()
            except AssertionError:
                pass
        self._cleanup()
        self.show_tail()


def flask_command(env: dict, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run one operator command (`flask --app wsgi ARGS`) in a process of its own, with `env`.

    Its stdout and stderr are returned apart, as subprocess.run gives them, and also kept in a log
    file whose tail is printed (shown by pytest only if the test fails).
    """
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    path = log_path(env, "-".join(args[:2]).replace("/", "_"))
    path.write_text(f"$ flask --app wsgi {' '.join(args)}\n--- stdout ---\n{done.stdout}--- stderr ---\n"
                    f"{done.stderr}--- exit {done.returncode} ---\n", encoding="utf-8")
    print(tail(path.read_text(encoding="utf-8").splitlines(), path))
    return done
