"""The processes the load harness starts, and making sure none outlives it.

Each child runs in a session of its own, so a Ctrl-C at the terminal reaches the harness alone and
the harness stops its children in order (the gateway first, gracefully, then the upstreams). A
child also gets SIGTERM from the kernel if the harness dies without cleaning up (PR_SET_PDEATHSIG).
A stopped child's whole process group is signalled: `serve`'s forked workers go with it.
"""
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: Optional[subprocess.Popen] = None) -> None:
    """Return once something accepts on 127.0.0.1:port; raise if `process` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args[:4]} exited ({process.returncode}) before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout:g} s")


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's (and so its children's) open-files soft limit toward `wanted`; return it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class Processes:
    """Starts children with their output in log files; `close` stops every one still running."""

    def __init__(self, logs: Path):
        self.logs = logs
        self._running: list[subprocess.Popen] = []

    def start(self, name: str, argv: list, *, env: Optional[dict] = None, cwd: Optional[Path] = None,
              stdout=None, stdin=None) -> subprocess.Popen:
        """Start `argv`; its stderr (and stdout unless given) goes to logs/<name>.log."""
        log = (self.logs / f"{name}.log").open("ab")
        try:
            process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                       stdout=stdout if stdout is not None else log, stderr=log,
                                       start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()
        process.log_path = self.logs / f"{name}.log"
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen, grace: float = 10.0) -> Optional[int]:
        """SIGTERM the process's group, wait up to `grace` seconds, then SIGKILL it; its exit code."""
        if process in self._running:
            self._running.remove(process)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(process.pid, signal.SIGKILL)  # workers left behind by a leader that exited
        except (ProcessLookupError, PermissionError):
            pass
        return process.poll()

    def close(self) -> None:
        for process in reversed(list(self._running)):
            self.stop(process, grace=5.0)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for an error message."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def family_pids(pid: int) -> list[int]:
    """`pid` and its direct children (serve's supervisor and its workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return [pid, *sorted(children)]


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, Pss) of one process in KiB; Pss shares pages fairly between the processes using them."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss
