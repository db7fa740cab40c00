"""The gateway under load (issue 14): added latency, throughput, streams, memory, and what each call writes.

  make bench                 full run (several minutes); writes docs/performance.md's generated section
  make bench-quick           under two minutes, SQLite only; the docs are left alone
  make bench BENCH_ARGS="--only latency,streams --json /tmp/run.json"

Everything runs on this machine, on loopback: the gateway as production serves it (`flask --app
wsgi serve`, bench/gateway.py) on a fresh scratch database per run, nginx answering a canned chat
completion and an asyncio server streaming stamped events (bench/upstreams.py), wrk driving load
(bench/wrk.py) and a streaming client (bench/stream_client.py), each in its own process, all
sharing the machine's cores. Scenarios (--only takes their names):

  latency     wrk at 1 and 16 connections on the gateway and on nginx directly (same body, same
              duration); the difference is what the gateway adds. SQLite; WORKERS and
              SERVE_THREADS from the environment (the product's defaults when unset).
  streams     N streams one after another, directly and through the gateway, chunked and
              close-delimited upstreams: time to the first event, and each event's relay delay.
  throughput  wrk at saturation on SQLite and Postgres, WORKERS=1 and WORKERS=2; rows and bytes
              written per billed call.
  held        1,000 streams (--held-streams) held open at once from a slow upstream; how many
              really stayed open, and the serving processes' resident memory.
  cpu         processor time the gateway spends per billed call (user and system, from /proc), one
              worker at 8 connections: unlike wall-clock figures it barely moves when other work
              shares the cores, so it is the figure to judge a change to the hot path by.

After each run the gateway is stopped and `flask ledger verify` run on its database: a run whose
ledger is not clean is marked invalid and the harness exits 1. Postgres: the server named by
--postgres, else BENCH_DATABASE_URL (BENCH_POSTGRES_URL, its older name), else the machine's
postgresql://postgres@127.0.0.1:5432/postgres; a scratch database is made from it and dropped.
Set BENCH_DATABASE_URL to an empty value (or pass --no-postgres) to skip it.
"""
import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import report, wrk
from .databases import Postgres, Sqlite, seed, written
from .seed import UPSTREAM_KEY
from .gateway import Gateway, base_env, effective, serving_settings
from .procs import Processes, family_pids, raise_open_files_limit, tail
from .upstreams import Nginx, SseUpstream, nginx_binary

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
SCENARIOS = ("latency", "streams", "throughput", "held", "cpu")

PROMPT = {"role": "user", "content": "Say hello to the benchmark. " * 8}
MAX_TOKENS = 64
JSON_MODEL = "bench-json"
STREAM_MODELS = {"chunked": "bench-sse-chunked", "close": "bench-sse-close", "held": "bench-sse-held"}


@dataclass
class Plan:
    """How long and how much: the quick and full modes differ only here."""

    quick: bool
    seconds: float            # each measured wrk run
    warmup: float             # wrk against a freshly started gateway, not measured
    latency_clients: tuple
    saturation_connections: int
    stream_count: int         # streams per (framing, direct or gateway)
    stream_events: int
    stream_gap_us: int
    held_streams: int
    held_gap_us: int          # the slow upstream's pause between events
    held_seconds: float       # how long the streams are held once open, memory sampled meanwhile
    throughput_workers: tuple

    @classmethod
    def make(cls, quick: bool, args) -> "Plan":
        plan = cls(quick=quick, seconds=4 if quick else 10, warmup=1.5 if quick else 3, latency_clients=(1, 16),
                   saturation_connections=32, stream_count=40 if quick else 150, stream_events=20,
                   stream_gap_us=5000, held_streams=200 if quick else 1000, held_gap_us=2_000_000,
                   held_seconds=2 if quick else 5, throughput_workers=(1, 2))
        if args.seconds:
            plan.seconds = args.seconds
        if args.held_streams:
            plan.held_streams = args.held_streams
        if args.stream_count:
            plan.stream_count = args.stream_count
        return plan


def request_body(model: str, stream: bool) -> bytes:
    document = {"model": model, "max_tokens": MAX_TOKENS, "messages": [PROMPT]}
    if stream:
        # Asked for, the usage chunk is the client's: the gateway sends the upstream's body on as it is.
        document.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(document, separators=(",", ":")).encode()


def percentile(values: list, q: float):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


class Bench:
    def __init__(self, args, plan: Plan, folder: Path):
        self.args, self.plan, self.folder = args, plan, folder
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True)
        self.processes = Processes(self.logs)
        self.backends = []
        self.results = {"runs": [], "latency": [], "streams": [], "throughput": [], "held": None, "written": [],
                        "cpu": None}
        self.wrk_log = self.logs / "wrk.log"

    # -- setting up ------------------------------------------------------------------------------

    def start_upstreams(self) -> None:
        self.nginx = Nginx(self.processes, self.folder / "nginx")
        self.sse = SseUpstream(self.processes)
        plan = self.plan
        self.upstream_urls = {
            "nginx": self.nginx.url,
            "sse-chunked": self.sse.base_url("chunked", plan.stream_events, plan.stream_gap_us),
            "sse-close": self.sse.base_url("close", plan.stream_events, plan.stream_gap_us),
            "sse-held": self.sse.base_url("held", 0, plan.held_gap_us),
        }
        self.direct_lua = wrk.script(self.folder, "direct", request_body(JSON_MODEL, False), UPSTREAM_KEY)
        for framing, model in STREAM_MODELS.items():
            (self.folder / f"{framing}.json").write_bytes(request_body(model, True))

    def prepare(self, backend) -> None:
        """Migrate and seed the backend's template; every run then starts from a copy of it."""
        spec = self.folder / "seed.json"
        spec.write_text(json.dumps({
            "upstreams": self.upstream_urls,
            "models": {JSON_MODEL: "nginx", STREAM_MODELS["chunked"]: "sse-chunked",
                       STREAM_MODELS["close"]: "sse-close", STREAM_MODELS["held"]: "sse-held"},
        }))
        started = time.monotonic()
        backend.key = seed(self.processes, base_env(self.folder / f"seed-{backend.name}", backend.template_url()),
                           spec)["key"]
        backend.lua = wrk.script(self.folder, f"gateway-{backend.name}", request_body(JSON_MODEL, False), backend.key)
        self.say(f"{backend.name}: migrated and seeded in {time.monotonic() - started:.1f} s")
        self.backends.append(backend)

    def say(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)

    # -- one gateway run ---------------------------------------------------------------------------

    def run_gateway(self, label: str, backend, overrides: dict, body) -> dict:
        """Start a gateway on a fresh copy of `backend`, run body(gateway), stop it, verify its ledger."""
        settings = serving_settings(overrides)
        url = backend.fresh()
        run = {"label": label, "database": backend.name, "settings": effective(settings), "ok": False}
        gateway = Gateway(self.processes, self.folder / "gateways" / label, label, url, settings)
        self.say(f"{label}: starting the gateway ({backend.name}, WORKERS={run['settings']['WORKERS']}, "
                 f"SERVE_THREADS={run['settings']['SERVE_THREADS']})")
        try:
            gateway.start()
            body(gateway, url)
        finally:
            code = gateway.stop()
            run["serve_exit"] = code
        run["verify"] = gateway.verify()
        run["ok"] = run["verify"]["ok"]
        self.say(f"{label}: ledger verify: {run['verify']['output'].splitlines()[-1] if run['verify']['output'] else '?'}")
        self.results["runs"].append(run)
        return run

    def warm(self, gateway: Gateway, backend, connections: int) -> None:
        wrk.run(gateway.url + "/v1/chat/completions", backend.lua, connections, self.plan.warmup,
                self.wrk_log)

    # -- scenarios ---------------------------------------------------------------------------------

    def latency_and_streams(self, scenarios: set) -> None:
        sqlite = self.backends[0]

        def body(gateway: Gateway, url: str) -> None:
            self.warm(gateway, sqlite, 4)
            if "latency" in scenarios:
                for clients in self.plan.latency_clients:
                    direct = wrk.run(self.nginx.url + "/chat/completions", self.direct_lua, clients,
                                     self.plan.seconds, self.wrk_log)
                    via = wrk.run(gateway.url + "/v1/chat/completions", sqlite.lua, clients,
                                  self.plan.seconds, self.wrk_log)
                    self.results["latency"].append({"clients": clients, "direct": direct.as_dict(), "gateway": via.as_dict()})
                    self.say(f"latency, {clients} client(s): direct p50 {direct.p50_us / 1000:.2f} ms, gateway p50 "
                             f"{via.p50_us / 1000:.2f} ms p99 {via.p99_us / 1000:.2f} ms, {via.rate:.0f} req/s, "
                             f"non-2xx {via.non_2xx}, errors {via.errors}")
            if "streams" in scenarios:
                for framing in ("chunked", "close"):
                    self.streams(gateway, sqlite.key, framing)

        self.run_gateway("latency-streams", sqlite, {}, body)

    def stream_client(self, url: str, body_file: Path, key, count: int) -> dict:
        argv = [sys.executable, "-m", "bench.stream_client", "timed", "--url", url, "--body-file", str(body_file),
                "--count", str(count)]
        if key:
            argv += ["--key", key]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60 + count * 5)
        if done.returncode != 0:
            raise RuntimeError(f"the stream client failed: {done.stderr.strip()[-2000:]}")
        return json.loads(done.stdout)

    def streams(self, gateway: Gateway, key: str, framing: str) -> None:
        body_file = self.folder / f"{framing}.json"
        direct_url = self.upstream_urls[f"sse-{framing}"] + "/chat/completions"
        via_url = gateway.url + "/v1/chat/completions"
        self.stream_client(via_url, body_file, key, 5)  # warm up this model's route
        measured = {}
        for name, url, key in (("direct", direct_url, None), ("gateway", via_url, key)):
            streams = self.stream_client(url, body_file, key, self.plan.stream_count)["streams"]
            first = [s["first_us"] for s in streams if s["first_us"] is not None]
            first_relay = [s["delays_us"][0] for s in streams if s["delays_us"]]
            later = [d for s in streams for d in s["delays_us"][1:]]
            measured[name] = {
                "streams": len(streams), "non_200": sum(1 for s in streams if s["status"] != 200),
                "incomplete": sum(1 for s in streams if s["status"] == 200 and not s["done"]),
                "events": sum(s["events"] for s in streams),
                "first_us": summary(first), "first_relay_us": summary(first_relay), "relay_us": summary(later),
            }
        row = {"framing": framing, "events_per_stream": self.plan.stream_events, "gap_us": self.plan.stream_gap_us,
               **measured}
        self.results["streams"].append(row)
        g, d = measured["gateway"], measured["direct"]
        self.say(f"streams, {framing}: first event direct p50 {fmt_ms(d['first_us']['p50'])}, gateway "
                 f"{fmt_ms(g['first_us']['p50'])}; relay delay per event gateway p50 {fmt_ms(g['relay_us']['p50'])} "
                 f"p99 {fmt_ms(g['relay_us']['p99'])} max {fmt_ms(g['relay_us']['max'])}; non-200 {g['non_200']}")

    def throughput(self) -> None:
        for backend in self.backends:
            for workers in self.plan.throughput_workers:
                label = f"throughput-{backend.name.lower()}-w{workers}"
                connections = self.plan.saturation_connections

                def body(gateway: Gateway, url: str, backend=backend, workers=workers) -> None:
                    self.warm(gateway, backend, connections)
                    before = quiet_snapshot(backend, url)
                    result = wrk.run(gateway.url + "/v1/chat/completions", backend.lua, connections,
                                     self.plan.seconds, self.wrk_log)
                    after = quiet_snapshot(backend, url)
                    wrote = written(before, after)
                    self.results["throughput"].append({"database": backend.name, "workers": workers,
                                                       "label": label, **result.as_dict()})
                    self.results["written"].append({"database": backend.name, "workers": workers,
                                                    "requests": result.requests, **asdict(wrote)})
                    self.say(f"{label}: {result.rate:.0f} req/s, p50 {result.p50_us / 1000:.1f} ms, p99 "
                             f"{result.p99_us / 1000:.1f} ms, non-2xx {result.non_2xx}, errors {result.errors}; "
                             f"{wrote.calls} billed calls, {wrote.total_bytes:.0f} bytes per call")

                self.run_gateway(label, backend, {"WORKERS": workers}, body)

    def cpu(self) -> None:
        sqlite = self.backends[0]
        connections = 8

        def body(gateway: Gateway, url: str) -> None:
            self.warm(gateway, sqlite, connections)
            pids = family_pids(gateway.process.pid)
            before = {pid: cpu_seconds(pid) for pid in pids}
            nginx_before = cpu_seconds(self.nginx.process.pid, children=True)
            result = wrk.run(gateway.url + "/v1/chat/completions", sqlite.lua, connections, self.plan.seconds,
                             self.wrk_log)
            time.sleep(0.5)  # calls cut short by wrk's stop finish
            after = {pid: cpu_seconds(pid) for pid in pids}
            nginx_after = cpu_seconds(self.nginx.process.pid, children=True)
            calls = result.requests
            user = sum(after[p][0] - before[p][0] for p in pids)
            system = sum(after[p][1] - before[p][1] for p in pids)
            upstream = sum(nginx_after) - sum(nginx_before)
            record = {"connections": connections, "calls": calls, "rate": result.rate,
                      "user_us": round(user / calls * 1e6, 1), "system_us": round(system / calls * 1e6, 1),
                      "upstream_us": round(upstream / calls * 1e6, 1), "non_2xx": result.non_2xx}
            self.results["cpu"] = record
            self.say(f"cpu: {record['user_us'] + record['system_us']:.0f} us of processor time per billed call "
                     f"(user {record['user_us']:.0f}, system {record['system_us']:.0f}; nginx "
                     f"{record['upstream_us']:.0f}); {calls} calls, {result.rate:.0f} req/s, non-2xx {result.non_2xx}")

        self.run_gateway("cpu", sqlite, {"WORKERS": 1}, body)

    def held(self) -> None:
        """Hold held_streams streams open at once through the gateway; count them and weigh the gateway."""
        plan = self.plan
        sqlite = self.backends[0]
        # Every stream holds one waitress thread for its whole length, and one call slot; the kernel
        # hands connections to workers unevenly, so each worker can take all of them.
        overrides = {"SERVE_THREADS": plan.held_streams + 16, "PROXY_MAX_INFLIGHT": plan.held_streams + 8}
        record = {"asked": plan.held_streams, "gap_us": plan.held_gap_us}

        def body(gateway: Gateway, url: str) -> None:
            self.sse.control("reset")
            idle = gateway.memory()
            client = self.processes.start("held-client", [
                sys.executable, "-m", "bench.stream_client", "held", "--url", gateway.url + "/v1/chat/completions",
                "--body-file", str(self.folder / "held.json"), "--key", sqlite.key, "--count", str(plan.held_streams),
                "--timeout", str(300)], cwd=ROOT, stdout=subprocess.PIPE)
            lines = Lines(client)
            started = time.monotonic()
            last = None
            # Opening: until every stream is open or failed, or nothing changed for 20 s.
            changed = time.monotonic()
            while time.monotonic() - started < 180:
                line = lines.next(1.0)
                if line is None:
                    if client.poll() is not None:
                        break
                else:
                    if last is None or (line["opened"], line["failed"]) != (last["opened"], last["failed"]):
                        changed = time.monotonic()
                    last = line
                    if line["open"] + line["failed"] + line["ended"] >= plan.held_streams:
                        break
                if time.monotonic() - changed > 20:
                    break
            record["seconds_to_open"] = round(time.monotonic() - started, 2)
            samples = []
            hold_until = time.monotonic() + plan.held_seconds
            while time.monotonic() < hold_until:
                line = lines.next(0.5) or last
                last = line
                samples.append({"memory": gateway.memory(), "client": line, "upstream": self.sse.control("stats")})
            peak = max(samples, key=lambda s: s["memory"]["rss_kib"])
            record.update(at_sample=samples[-1]["client"], upstream_at_sample=samples[-1]["upstream"],
                          memory_idle=idle, memory_peak=peak["memory"], memory_last=samples[-1]["memory"])
            self.sse.control("release")
            final = last
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                line = lines.next(1.0)
                if line is not None:
                    final = line
                    if line.get("final"):
                        break
                elif client.poll() is not None:
                    break
            self.processes.stop(client, grace=5)
            record["final"] = final
            self.say(f"held: {record['at_sample']['open'] if record['at_sample'] else '?'} of {plan.held_streams} "
                     f"streams open, upstream saw {record['upstream_at_sample']['held']}; serving processes' RSS "
                     f"{peak['memory']['rss_kib'] / 1024:.0f} MiB (Pss {peak['memory']['pss_kib'] / 1024:.0f} MiB)")

        run = self.run_gateway("held", sqlite, overrides, body)
        record["settings"] = {**run["settings"], "PROXY_MAX_INFLIGHT_PER_ACCOUNT": "= PROXY_MAX_INFLIGHT",
                              "PROXY_MAX_INFLIGHT_PER_KEY": "= PROXY_MAX_INFLIGHT"}
        self.results["held"] = record


def quiet_snapshot(backend, url: str):
    """A snapshot once calls cut short by wrk's stop have finished (no new usage record since the last look)."""
    snapshot = backend.snapshot(url)
    for _ in range(20):
        time.sleep(0.2)
        again = backend.snapshot(url)
        if again.rows.get("usage_record") == snapshot.rows.get("usage_record"):
            return again
        snapshot = again
    return snapshot


class Lines:
    """JSON lines from a child's stdout, read without blocking past a timeout."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.buffer = b""
        os.set_blocking(process.stdout.fileno(), False)

    def next(self, timeout: float):
        import select

        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if not ready:
                return None
            data = self.process.stdout.read()
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


def cpu_seconds(pid: int, children: bool = False) -> tuple[float, float]:
    """(user, system) processor seconds of a process so far (with its reaped children's, or its live
    children's too when `children`, as nginx's workers are)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = family_pids(pid) if children else [pid]
    user = system = 0.0
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) / tick
        system += int(fields[12]) / tick
    return user, system


def summary(values: list) -> dict:
    return {"n": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values) if values else None}


def fmt_ms(us) -> str:
    return "-" if us is None else f"{us / 1000:.2f} ms"


def postgres_url(args) -> str:
    if args.no_postgres:
        return ""
    if args.postgres is not None:
        return args.postgres
    for name in ("BENCH_DATABASE_URL", "BENCH_POSTGRES_URL"):
        if name in os.environ:
            return os.environ[name]
    return DEFAULT_POSTGRES


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.load_bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true", help="short runs, fewer streams, SQLite only (under 2 minutes)")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios to run, of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--postgres", metavar="URL", help="Postgres server to make a scratch database on "
                        "(default: BENCH_DATABASE_URL, BENCH_POSTGRES_URL, the machine's); in --quick, asking is using it")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--seconds", type=float, help="each measured wrk run (default: 4 quick, 10 full)")
    parser.add_argument("--stream-count", type=int, help="streams timed per upstream framing and path (40 quick, 150 full)")
    parser.add_argument("--held-streams", type=int, help="streams held open at once (200 quick, 1000 full)")
    parser.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None,
                        help="write the tables into docs/performance.md's generated section (default: only a full "
                        "run of every scenario does)")
    parser.add_argument("--note", default="", help="a few words saying what was measured, printed with the tables")
    parser.add_argument("--json", metavar="PATH", help="also write every figure measured, as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    return args


def missing_tools() -> list[str]:
    missing = []
    if not wrk.binary():
        missing.append("wrk (Debian package `wrk`; `make wrk` installs it as root)")
    if not nginx_binary():
        missing.append("nginx (Debian package `nginx`; `make nginx` installs it as root)")
    return missing


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = Plan.make(args.quick, args)
    scenarios = set(args.only.split(","))
    missing = missing_tools()
    if missing:
        print("make bench needs: " + "; ".join(missing), file=sys.stderr)
        return 2
    # Each held stream is two sockets in the gateway (client and upstream) and one in each of the
    # client and the upstream server.
    open_files = raise_open_files_limit(4 * plan.held_streams + 1024)
    # SIGTERM (a CI timeout, `kill`) cleans up as Ctrl-C does.
    signal.signal(signal.SIGTERM, interrupted)
    folder = Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
    bench = Bench(args, plan, folder)
    started = time.monotonic()
    failed = None
    pg_url = postgres_url(args)
    use_postgres = bool(pg_url) and "throughput" in scenarios and (not args.quick or args.postgres is not None)
    postgres_note = None
    try:
        bench.say(f"{'quick' if args.quick else 'full'} run: {', '.join(s for s in SCENARIOS if s in scenarios)}; "
                  f"temporary folder {folder}")
        bench.start_upstreams()
        bench.prepare(Sqlite(folder / "sqlite"))
        if use_postgres:
            postgres = Postgres(pg_url)
            try:
                postgres.check()
            except Exception as exc:
                postgres_note = f"skipped: cannot connect to {pg_url} ({type(exc).__name__}: {str(exc).strip()[:200]})"
                bench.say(f"Postgres {postgres_note}")
            else:
                try:
                    bench.prepare(postgres)
                except Exception:
                    postgres.drop_all()
                    raise
        elif "throughput" in scenarios:
            postgres_note = "not run (" + ("--quick; pass --postgres URL to add it" if args.quick and pg_url
                                           else "no server given") + ")"
        if scenarios & {"latency", "streams"}:
            bench.latency_and_streams(scenarios)
        if "throughput" in scenarios:
            bench.throughput()
        if "held" in scenarios:
            bench.held()
        if "cpu" in scenarios:
            bench.cpu()
    except KeyboardInterrupt:
        failed = "interrupted"
    except Exception as exc:
        failed = f"{type(exc).__name__}: {exc}"
        import traceback

        traceback.print_exc()
    finally:
        bench.processes.close()
        for backend in bench.backends:
            try:
                backend.drop_all()
            except Exception as exc:
                print(f"could not drop the scratch databases: {exc}", file=sys.stderr)
        if failed and failed != "interrupted":
            for log in sorted(bench.logs.glob("*.log")):
                print(f"--- last lines of {log.name} ---\n{tail(log, 15)}", file=sys.stderr)
        if args.keep:
            print(f"logs and databases kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    results = bench.results
    results.update(meta=report.meta(plan, args, time.monotonic() - started, open_files, postgres_note, scenarios),
                   failed=failed)
    markdown = report.render(results)
    print()
    print(markdown)
    valid = not failed and all(run["ok"] for run in results["runs"])
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "valid": valid}, indent=1, default=str))
    # By default only a full run of every scenario replaces the section: a partial one would drop the rest.
    write_docs = args.docs if args.docs is not None else (not args.quick and scenarios == set(SCENARIOS))
    if write_docs and not failed:
        report.write_section(DOCS, markdown)
        print(f"written to {DOCS.relative_to(ROOT)}")
    if failed:
        print(f"\nbench failed: {failed}", file=sys.stderr)
        return 1
    if not valid:
        print("\nINVALID: `flask ledger verify` was not clean after a run (see the Runs table)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
