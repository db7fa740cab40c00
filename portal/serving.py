"""Waitress, configured for holding many long streams at once.

Waitress keeps one worker thread per response being written, so an open stream holds a thread
for its whole length. Its defaults (4 threads, 100 connections) stall the fifth concurrent
stream for seconds; we run SERVE_THREADS threads and let the proxy refuse calls beyond
PROXY_MAX_INFLIGHT at once (503) rather than queue them behind running streams.

Waitress also decides whose X-Forwarded-* headers to believe, because only it knows the peer's
address: from TRUSTED_PROXY it takes the client address from the last TRUSTED_PROXY_HOPS entries
of X-Forwarded-For, and the scheme from X-Forwarded-Proto; from anyone else it drops them.

Several processes (WORKERS): `serve` binds the listening socket once, forks WORKERS children that
each run their own waitress on it (the kernel hands each new connection to one of them), and stays
as their supervisor: it restarts a worker that dies, waiting longer each time one dies young so a
worker that cannot start does not spin, and on SIGTERM or SIGINT asks every worker to finish what it
is serving (SERVE_GRACE_SECONDS at most) and exits 0. Nothing that holds a connection or a thread
crosses the fork: the parent serves nothing and closes its database pool and upstream sessions
before forking, so each worker opens its own; only worker 0 starts the periodic jobs, whose
database claims still keep other machines from running them twice.
"""
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from flask import Flask
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

log = logging.getLogger(__name__)

# Not X-Forwarded-Host or -Port: proxies pass the Host header itself (nginx: `Host $host`) and
# most forward a client's own X-Forwarded-Host untouched, so believing it would let any client
# choose the host. X-Forwarded-Proto is set by the proxy, overwriting the client's.
FORWARDED_HEADERS = {"x-forwarded-for", "x-forwarded-proto"}

BACKLOG = 1024
# A worker that dies within STABLE_SECONDS of starting is restarted after a delay that doubles
# each time (FIRST_DELAY up to MAX_DELAY); one that ran longer is restarted at once.
STABLE_SECONDS = 30.0
FIRST_DELAY, MAX_DELAY = 0.5, 30.0
KILL_AFTER_GRACE = 5.0  # a worker still alive this long after its grace period is killed


def proxy_options(config) -> dict:
    """Waitress's proxy settings: trust X-Forwarded-* from TRUSTED_PROXY only, when there are hops."""
    if not config["TRUSTED_PROXY_HOPS"]:
        return {"clear_untrusted_proxy_headers": True}
    return {"trusted_proxy": config["TRUSTED_PROXY"], "trusted_proxy_count": config["TRUSTED_PROXY_HOPS"],
            "trusted_proxy_headers": set(FORWARDED_HEADERS), "clear_untrusted_proxy_headers": True}


def options(config) -> dict:
    return {
        **proxy_options(config),
        "threads": config["SERVE_THREADS"],
        "connection_limit": config["SERVE_CONNECTION_LIMIT"],
        # A little above the app's own limit, so an oversized body gets the app's 413 in the API's
        # JSON shape; waitress's plain-text 413 only stops bodies far beyond it.
        "max_request_body_size": config["MAX_CONTENT_LENGTH"] + 1024 * 1024,
        "asyncore_use_poll": True,  # select() cannot watch more than 1024 sockets
        # Keep reading a connection while its request runs, so a client that hangs up is seen at
        # once (`waitress.client_disconnected`), not at the next write: a stream waiting on a
        # silent upstream stops reading it (proxy/relay.py), and a complete response nobody is left
        # to receive is recorded as such (proxy/pipeline.py).
        "channel_request_lookahead": 1,
        "ident": "tollgate",
    }


def create(app: Flask, host: str, port: int, **overrides):
    """A waitress server for `app` bound to host:port (port 0 picks a free one)."""
    return create_server(app, host=host, port=port, **{**options(app.config), **overrides})


def create_on(app: Flask, sockets: list, **overrides):
    """A waitress server for `app` accepting on sockets already bound and listening."""
    return create_server(app, sockets=sockets, **{**options(app.config), **overrides})


def listen(host: str, port: int) -> list[socket.socket]:
    """Bind host:port once, for every worker to accept from (the addresses waitress itself would bind)."""
    sockets = []
    for family, socktype, proto, address in Adjustments(host=host, port=port).listen:
        sock = socket.socket(family, socktype, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sockets.append(sock)
    return sockets


# -- serving ------------------------------------------------------------------------------------

def serve(app: Flask, echo: Callable[[str], None] = print) -> None:
    """Serve `app` on HOST:PORT until SIGTERM or SIGINT: in this process (WORKERS=1) or in WORKERS forks."""
    config = app.config
    sockets = listen(config["HOST"], config["PORT"])
    port = sockets[0].getsockname()[1]
    workers = config["WORKERS"]
    echo(f"serving on http://{config['HOST']}:{port}/ ({config['PORTAL_ENV']}, "
         f"{workers} process{'es' if workers > 1 else ''} of {config['SERVE_THREADS']} threads)")
    try:
        if workers == 1:
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # else its metrics live in this process alone
                _multiprocess_metrics(app.instance_path)  # a killed predecessor's open streams would stay counted
            _work(app, sockets, 0, echo)
        else:
            _multiprocess_metrics(app.instance_path)
            _close_connections(app)
            Supervisor(lambda slot: _work(app, sockets, slot, echo, forked=True), workers, echo,
                       grace=config["SERVE_GRACE_SECONDS"]).run()
    finally:
        for sock in sockets:
            sock.close()
    echo("stopped")


def start_jobs(app: Flask, echo: Callable[[str], None]) -> None:
    """Start this process's periodic-job threads (one process per machine does; see the module docstring)."""
    from . import announcements, expiry

    if expiry.start_timer(app) is not None:  # a database claim keeps other processes from running it too
        echo(f"expiry job: every {app.config['JOBS_INTERVAL_SECONDS']} seconds")
    if announcements.start_worker(app) is not None:  # resumes unfinished ones; a lease keeps one sender
        echo(f"announcements: sent in the background, {app.config['ANNOUNCE_PER_MINUTE']} a minute at most")


def _work(app: Flask, sockets: list, slot: int, echo, forked: bool = False) -> None:
    """One serving process: waitress on the shared sockets until SIGTERM or SIGINT."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if forked:
        _close_connections(app, after_fork=True)
    server = create_on(app, sockets)
    if slot == 0:
        start_jobs(app, echo)
    _serve_until_stopped(server, stop, app.config["SERVE_GRACE_SECONDS"])


def _close_connections(app: Flask, after_fork: bool = False) -> None:
    """Drop pooled database and upstream connections so that a forked worker opens its own.

    Before forking the parent closes them; after it, a worker forgets the pool it inherited
    without closing the connections in it, which belong to the parent (SQLAlchemy's recipe for
    forking). Redis's client notices the new process id by itself.
    """
    from . import sitesettings
    from .extensions import db

    with app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=not after_fork)
    sitesettings.dispose(app, close=not after_fork)
    gateway = app.extensions.get("tollgate.gateway")
    if gateway is not None and not after_fork:
        gateway.close()  # its pools open new connections when next used


def _multiprocess_metrics(instance_path: str) -> None:
    """Point prometheus_client at an empty directory shared by the workers (its multiprocess mode).

    An operator's PROMETHEUS_MULTIPROC_DIR is used as it is, emptied of the last run's files;
    otherwise a folder of the instance folder. This process's own files stay: it has them open
    since the metrics were imported, and a file unlinked under it would hide what it records.
    """
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or Path(instance_path) / "prometheus")
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        if not stale.stem.endswith(f"_{os.getpid()}"):
            stale.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _mark_dead(pid: int) -> None:
    """Tell prometheus_client a worker is gone (its live gauges stop counting)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)
        except Exception:
            log.exception("could not clear the metrics of worker process %s", pid)


def _channels(server_map: dict) -> list:
    return [c for c in list(server_map.values()) if isinstance(c, HTTPChannel)]


def _serve_until_stopped(server, stop: threading.Event, grace: float) -> None:
    """Run waitress until `stop` is set; then stop accepting, let running requests finish for up to
    `grace` seconds, and close the rest."""
    server_map = server._map  # waitress keeps its listeners and connections here; its loop is ours to run
    adj = server.adj
    while not stop.is_set():
        wasyncore.loop(timeout=adj.asyncore_loop_timeout, map=server_map, use_poll=adj.asyncore_use_poll, count=1)
    for listener in [d for d in list(server_map.values()) if isinstance(d, BaseWSGIServer)]:
        # The dispatcher's close, not waitress's: its trigger still wakes the loop for the last writes.
        wasyncore.dispatcher.close(listener)
    running = sum(len(channel.requests) for channel in _channels(server_map))
    log.info("process %s stopping: %d request(s) still running, given %g s to finish", os.getpid(), running, grace)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        busy = False
        for channel in _channels(server_map):
            if channel.requests or channel.total_outbufs_len:
                busy = True
            else:
                channel.will_close = True  # idle keep-alive connection: closed on the next loop
        if not busy:
            break
        wasyncore.loop(timeout=0.1, map=server_map, use_poll=adj.asyncore_use_poll, count=1)
    for channel in _channels(server_map):
        channel.close()
    server.task_dispatcher.shutdown(timeout=KILL_AFTER_GRACE / 2)


# -- the supervisor of several workers ----------------------------------------------------------

@dataclass
class _Worker:
    slot: int
    pid: int
    started: float


class Supervisor:
    """Forks `count` workers (each runs `work(slot)`), restarts the dead, stops them all on a signal."""

    def __init__(self, work: Callable[[int], None], count: int, echo: Callable[[str], None], grace: float):
        self.work, self.count, self.echo, self.grace = work, count, echo, grace
        self.workers: dict[int, _Worker] = {}
        self.delays = [0.0] * count               # the next restart's wait, per slot
        self.due: dict[int, float] = {}           # slot -> when to start it again
        self.stopping = False
        self._wake_r = self._wake_w = -1

    def run(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        # Any signal wakes the loop through the pipe; SIGCHLD needs a handler of its own for that.
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            for slot in range(self.count):
                self._spawn(slot)
            while not self.stopping:
                self._reap()
                self._start_due()
                self._sleep(self._next_timeout())
            self._stop_all()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _sleep(self, timeout: Optional[float]) -> None:
        try:
            select.select([self._wake_r], [], [], timeout)
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _next_timeout(self) -> Optional[float]:
        if not self.due:
            return None
        return max(0.0, min(self.due.values()) - time.monotonic())

    def _spawn(self, slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(slot)  # never returns
        self.workers[pid] = _Worker(slot, pid, time.monotonic())
        self.echo(f"worker {slot} started (pid {pid})")

    def _child(self, slot: int) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)  # until the worker sets its own (stopping gracefully)
            self.work(slot)
            code = 0
        except BaseException:
            log.exception("worker %s failed", slot)
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)  # not the parent's atexit handlers, nor its click context

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            _mark_dead(pid)
            if self.stopping:
                continue
            lived = time.monotonic() - worker.started
            delay = 0.0 if lived >= STABLE_SECONDS else min(max(self.delays[worker.slot] * 2, FIRST_DELAY), MAX_DELAY)
            self.delays[worker.slot] = delay
            self.due[worker.slot] = time.monotonic() + delay
            log.warning("worker %s (pid %s) exited (%s) after %.1f s; starting another in %g s", worker.slot, pid,
                        _how(status), lived, delay)

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot, when in sorted(self.due.items()):
            if when <= now and not self.stopping:
                del self.due[slot]
                self._spawn(slot)

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait out their grace period, then SIGKILL what is left."""
        for pid in list(self.workers):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace + KILL_AFTER_GRACE
        while self.workers and time.monotonic() < deadline:
            self._reap()
            if self.workers:
                self._sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        for pid in list(self.workers):
            log.warning("worker pid %s did not stop within %g s; killing it", pid, self.grace + KILL_AFTER_GRACE)
            _signal(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.workers.pop(pid, None)
            _mark_dead(pid)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _how(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
