"""wrk, the load generator: one POST with a JSON body, repeated on keep-alive connections.

wrk sends a body and headers only from a Lua script, written to a temporary file. The script's
`done` hook prints one JSON line with the exact latency percentiles (microseconds, from wrk's own
histogram: what `--latency` prints rounded) and the error counts, and how many responses each wrk
thread got; with one connection per thread that shows whether any client was starved.
wrk's latency includes its own client overhead, equally for the upstream called directly and
through the gateway.
"""
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

MARK = "WRK_JSON "
MAX_THREADS = 16

SCRIPT = """\
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(auth)s
local threads = {}
function setup(thread) table.insert(threads, thread) end
responses = 0
function response(status, headers, body) responses = responses + 1 end
function done(summary, latency, requests)
  local per = {}
  for _, t in ipairs(threads) do table.insert(per, tostring(t:get("responses"))) end
  io.write(string.format('%(mark)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect_errors":%%d,' ..
    '"read_errors":%%d,"write_errors":%%d,"non_2xx":%%d,"timeouts":%%d,"p50_us":%%d,"p75_us":%%d,' ..
    '"p90_us":%%d,"p99_us":%%d,"p999_us":%%d,"max_us":%%d,"mean_us":%%.1f,"per_thread":[%%s]}\\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, latency:percentile(50),
    latency:percentile(75), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, table.concat(per, ",")))
end
"""


@dataclass
class Result:
    connections: int
    threads: int
    requests: int
    duration_us: int
    bytes: int
    connect_errors: int
    read_errors: int
    write_errors: int
    non_2xx: int
    timeouts: int
    p50_us: int
    p75_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    max_us: int
    mean_us: float
    per_thread: list

    @property
    def rate(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def as_dict(self) -> dict:
        return {**asdict(self), "rate": round(self.rate, 1), "errors": self.errors}


def binary() -> Optional[str]:
    return shutil.which("wrk")


def script(folder: Path, name: str, body: bytes, key: Optional[str]) -> Path:
    """A Lua script posting `body`, with `Authorization: Bearer key` when a key is given."""
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"' if key else ""
    path = folder / f"{name}.lua"
    path.write_text(SCRIPT % {"body": body.decode(), "auth": auth, "mark": MARK})
    return path


def run(url: str, lua: Path, connections: int, seconds: float, log: Path) -> Result:
    """wrk on `url` with `connections` keep-alive connections for `seconds`; its output appended to `log`."""
    threads = min(connections, MAX_THREADS)
    argv = [binary() or "wrk", "--latency", "--timeout", "30s", "-t", str(threads), "-c", str(connections),
            "-d", f"{max(1, round(seconds))}s", "-s", str(lua), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    with log.open("a") as f:
        f.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    line = next((line for line in done.stdout.splitlines() if line.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return Result(connections=connections, threads=threads, **json.loads(line[len(MARK):]))
