"""The load harness's results as Markdown, and the generated section of docs/performance.md.

Only the text between START and END is replaced; the rest of the file is left as it is. Without
the markers the section is added at the end.
"""
import datetime
import os
import platform
import sqlite3
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def meta(plan, args, seconds: float, open_files: int, postgres_note, scenarios: set) -> dict:
    changed = _git("status", "--porcelain", "--", "portal", "proxy", "wsgi.py", "migrations")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(), "cpu": _cpu(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": _git("rev-parse", "--short", "HEAD") or "?", "uncommitted_changes": bool(changed),
        "mode": "quick" if plan.quick else "full", "plan": vars(plan), "seconds_taken": round(seconds),
        "open_files_limit": open_files, "postgres": postgres_note, "scenarios": sorted(scenarios),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "note": args.note,
    }


def ms(us, digits: int = 2) -> str:
    return "–" if us is None else f"{us / 1000:,.{digits}f} ms"


def signed_ms(us) -> str:
    return "–" if us is None else f"{'+' if us >= 0 else '−'}{abs(us) / 1000:,.2f} ms"


def table(header: list, rows: list) -> list:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def _spread(per_thread: list) -> str:
    return f"{min(per_thread):,}–{max(per_thread):,}" if per_thread else "–"


def _settings(run_settings: dict) -> str:
    return f"WORKERS={run_settings['WORKERS']}, SERVE_THREADS={run_settings['SERVE_THREADS']}"


def render(results: dict) -> str:
    m = results["meta"]
    plan = m["plan"]
    runs = {run["label"]: run for run in results["runs"]}
    lines = [
        "## Gateway under load (`make bench`, generated)",
        "",
        f"{m['mode'].capitalize()} run of {m['date']} on {m['cores']} cores ({m['cpu']}), commit {m['commit']}"
        + (" with uncommitted changes to the product" if m["uncommitted_changes"] else "")
        + f"; load average {m['load_average'][0]} at the end; {m['seconds_taken']} s in all. Everything on loopback "
        "and on the same cores: the gateway (`flask --app wsgi serve`, a fresh database per run), wrk, nginx "
        "answering a canned 300-byte chat completion, and an asyncio SSE server. "
        f"Each wrk run lasts {plan['seconds']:g} s, after {plan['warmup']:g} s of warm-up. "
        "Regenerate with `make bench` (this section only; `make bench-quick` prints without writing).",
        "",
    ]
    if m.get("note"):
        lines += [f"Note: {m['note']}", ""]
    if results.get("failed"):
        lines += [f"**The run failed: {results['failed']}.** Figures below are what was measured before it.", ""]

    if results["latency"]:
        settings = _settings(runs["latency-streams"]["settings"]) if "latency-streams" in runs else "?"
        lines += [f"**Added latency**: non-streaming chat completions, SQLite, {settings}. wrk against the "
                  "gateway and against nginx directly (same body, same duration); added = gateway − direct. "
                  "Calls per client: fewest and most responses one wrk connection got (starvation shows as a low "
                  "minimum).", ""]
        rows = []
        for r in results["latency"]:
            d, g = r["direct"], r["gateway"]
            rows.append([r["clients"], ms(d["p50_us"]), ms(d["p99_us"]), ms(g["p50_us"]), ms(g["p99_us"]),
                         signed_ms(g["p50_us"] - d["p50_us"]), signed_ms(g["p99_us"] - d["p99_us"]),
                         _ratio(g["p99_us"], g["p50_us"]), ms(g["max_us"], 1), f"{g['rate']:,.0f}", f"{d['rate']:,.0f}", _spread(g["per_thread"]),
                         g["non_2xx"], g["errors"]])
        lines += table(["clients", "direct p50", "direct p99", "gateway p50", "gateway p99", "added p50",
                        "added p99", "gateway p99/p50", "gateway max", "gateway req/s", "direct req/s", "calls per client",
                        "non-2xx", "socket errors"], rows) + [""]

    if results["throughput"]:
        lines += [f"**Throughput at saturation**: {plan['saturation_connections']} wrk connections, full billing "
                  "(hold, settle, usage record per call); SERVE_THREADS as above.", ""]
        rows = []
        for r in results["throughput"]:
            run = runs.get(r["label"], {})
            rows.append([r["database"], r["workers"], f"{r['rate']:,.0f}", ms(r["p50_us"], 1), ms(r["p99_us"], 1),
                         ms(r["max_us"], 0), f"{r['requests']:,}", r["non_2xx"], r["errors"],
                         "clean" if run.get("ok") else "**NOT CLEAN**"])
        lines += table(["database", "WORKERS", "req/s", "p50", "p99", "max", "calls", "non-2xx", "socket errors",
                        "ledger verify"], rows) + [""]
    if m.get("postgres") and "throughput" in m["scenarios"]:
        lines += [f"Postgres: {m['postgres']}.", ""]

    if results["streams"]:
        first = results["streams"][0]
        lines += [f"**Streams**: {first['gateway']['streams']} streams one after another per row, each "
                  f"{first['events_per_stream']} events {first['gap_us'] / 1000:g} ms apart, with usage. First event: "
                  "from sending the request to reading the first event (the gateway's admission, hold and "
                  "upstream call included). Relay delay: an event's arrival at the client minus the moment the "
                  "upstream sent it (stamped with CLOCK_MONOTONIC), for every event after the first; the first "
                  "event's own relay delay is in its own column.", ""]
        rows = []
        for r in results["streams"]:
            d, g = r["direct"], r["gateway"]
            rows.append([r["framing"], ms(d["first_us"]["p50"]), ms(g["first_us"]["p50"]),
                         signed_ms(_diff(g["first_us"]["p50"], d["first_us"]["p50"])),
                         signed_ms(_diff(g["first_us"]["p99"], d["first_us"]["p99"])),
                         ms(g["first_relay_us"]["p50"]), ms(d["relay_us"]["p50"]), ms(g["relay_us"]["p50"]),
                         ms(g["relay_us"]["p99"]), ms(g["relay_us"]["max"]), g["non_200"] + g["incomplete"]])
        lines += table(["upstream framing", "first event direct p50", "gateway p50", "added p50", "added p99",
                        "first event's relay p50", "relay direct p50", "relay gateway p50", "relay gateway p99",
                        "relay gateway max", "failed streams"], rows) + [""]

    held = results.get("held")
    if held:
        s = held["settings"]
        at = held.get("at_sample") or {}
        final = held.get("final") or {}
        peak, idle = held.get("memory_peak") or {}, held.get("memory_idle") or {}
        lines += [f"**Open streams**: {held['asked']:,} streams opened at once through the gateway (SQLite) from "
                  f"a slow upstream (an event every {held['gap_us'] / 1e6:g} s), held {plan['held_seconds']:g} s, "
                  f"then ended by the upstream. Settings it took: WORKERS={s['WORKERS']}, SERVE_THREADS="
                  f"{s['SERVE_THREADS']} and PROXY_MAX_INFLIGHT={s['PROXY_MAX_INFLIGHT']} per worker, per-account "
                  "and per-key in-flight limits as high. Resident memory: VmRSS of `serve` and its workers "
                  "summed (pages shared after the fork count in each), and Pss (shared pages split between them).",
                  ""]
        rows = [[_count(held["asked"]), _count(at.get("open")), _count((held.get("upstream_at_sample") or {}).get("held")),
                 held.get("seconds_to_open", "–"), _count(final.get("ended")), _count(final.get("failed")),
                 _statuses(final), f"{idle.get('rss_kib', 0) / 1024:,.0f} MiB",
                 f"{peak.get('rss_kib', 0) / 1024:,.0f} MiB", f"{peak.get('pss_kib', 0) / 1024:,.0f} MiB",
                 peak.get("processes", "–")]]
        lines += table(["streams asked", "open at the client", "open at the upstream", "seconds to open",
                        "ended cleanly", "failed", "statuses", "RSS idle", "RSS held", "Pss held", "processes"],
                       rows) + [""]

    cpu = results.get("cpu")
    if cpu:
        lines += [f"**Processor time per billed call**: one serving process (WORKERS=1, SQLite) at {cpu['connections']} "
                  "wrk connections; user and system time from /proc over the run, divided by the calls answered. "
                  "Less moved by other work on the machine than the wall-clock figures: the one to judge a change "
                  "to the hot path by.", ""]
        rows = [[f"{cpu['user_us'] + cpu['system_us']:,.0f} µs", f"{cpu['user_us']:,.0f} µs", f"{cpu['system_us']:,.0f} µs",
                 f"{cpu['upstream_us']:,.0f} µs", f"{cpu['calls']:,}", f"{cpu['rate']:,.0f}", _count(cpu["non_2xx"])]]
        lines += table(["gateway per call", "user", "system", "nginx per call", "calls", "req/s", "non-2xx"], rows) + [""]

    wrote = [w for w in results["written"] if w["calls"]]
    if wrote:
        lines += ["**Written per billed call** (the saturation runs; a billed call is one usage record; "
                  "SQLite bytes: the file's growth with its WAL checkpointed in; Postgres: "
                  "pg_total_relation_size, tables with their indexes, and the server's WAL. Not counted: SQLite's "
                  "rate-limit counter file, used when WORKERS > 1).", ""]
        rows = []
        for w in wrote:
            tables = sorted(set(w["rows"]) | set(w["bytes"]))
            detail = "; ".join(f"{t} {w['rows'].get(t, 0):.2f} rows, {w['bytes'].get(t, 0):,.0f} B" for t in tables)
            rows.append([w["database"], w["workers"], f"{w['calls']:,}", detail, f"{w['total_bytes']:,.0f} B",
                         f"{w['wal_bytes']:,.0f} B" if w["database"] == "Postgres" else "–"])
        lines += table(["database", "WORKERS", "billed calls", "rows and bytes per call, by table", "bytes per call",
                        "WAL per call"], rows) + [""]

    if results["runs"]:
        lines += ["**Runs**: `flask ledger verify` after each gateway stopped; a run whose ledger is not clean is "
                  "invalid.", ""]
        rows = [[run["label"], run["database"], _settings(run["settings"]),
                 "clean" if run["ok"] else "**NOT CLEAN: run invalid**",
                 (run["verify"]["output"].splitlines() or ["?"])[-1].replace("|", "/")] for run in results["runs"]]
        lines += table(["run", "database", "serving", "ledger verify", "its last line"], rows)
    return "\n".join(lines).rstrip() + "\n"


def _count(n) -> str:
    return "–" if n is None else f"{n:,}"


def _ratio(a, b) -> str:
    return "–" if not b else f"{a / b:,.1f}"


def _diff(a, b):
    return None if a is None or b is None else a - b


def _statuses(line: dict) -> str:
    statuses = dict(line.get("statuses") or {})
    errors = dict(line.get("errors") or {})
    parts = [f"{code}: {n:,}" for code, n in sorted(statuses.items())] + [f"{e}: {n:,}" for e, n in errors.items()]
    return ", ".join(parts) or "–"


def write_section(path: Path, markdown: str) -> None:
    """Replace the text between the markers in `path` (or add the section at the end)."""
    text = path.read_text()
    block = f"{START}\n{markdown.rstrip()}\n{END}"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
