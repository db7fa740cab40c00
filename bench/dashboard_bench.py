"""The console's dashboards on a million usage records, on SQLite and Postgres.

Fills a scratch database in bulk (executemany on SQLite, COPY on Postgres): 1,000,000 usage
records spread evenly over 90 days, as many settled holds and charge entries, 2,000 people,
5 upstreams, 20 models, a few thousand payments, refunds and disputes, 50 open holds. Then
times each dashboard query and the whole page, for the 7-, 30- and 90-day periods, three ways:

- before: the schema as it was before migration 0017 (its indexes dropped), every day read live;
- indexes: with 0017's indexes, every day still read live;
- rollups: after the periodic job rolled up the closed days (today is read live).

Usage: python -m bench.dashboard_bench [--records 1000000] [--repeat 3]
Postgres is measured when BENCH_POSTGRES_URL (a server we may create a scratch database on) is set.
"""
import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import flask_migrate
import psycopg
from flask_login import login_user
from sqlalchemy import text
from sqlalchemy.engine import make_url

from portal import create_app, dashboards
from portal.config import database_url
from portal.extensions import db
from portal.models import User, UsageRecord, utcnow

USERS, UPSTREAMS, MODELS, PAYMENTS, RETURNS, OPEN_HOLDS = 2_000, 5, 20, 4_000, 300, 50
DAYS = 90
# 0017's indexes, as `bench` drops them for the "before" figures and makes them again.
INDEXES = {
    "ix_usage_started": ("usage_record", "(started_at)", ""),
    "ix_ledger_entry_kind_time": ("ledger_entry", "(kind, created_at)", ""),
    "ix_payment_paid": ("payment", "(status, paid_at)", ""),
    "ix_hold_open_age": ("hold", "(created_at)", "WHERE status = 'open'"),
}
QUERIES = ("revenue", "spend_per_day", "models", "upstreams", "top_users", "open_holds", "page")


def stamp(moment, postgres: bool) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") + ("+00" if postgres else "")


class Loader:
    """Bulk rows into one table: COPY on Postgres, executemany on SQLite."""

    def __init__(self, raw, postgres: bool):
        self.raw, self.postgres = raw, postgres

    def load(self, table: str, columns: list[str], rows) -> None:
        if self.postgres:
            with self.raw.cursor() as cur, cur.copy(f'COPY "{table}" ({", ".join(columns)}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            cur = self.raw.cursor()
            cur.execute("BEGIN")  # the app's connections autocommit (database.py issues BEGIN itself)
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) == 50_000:
                    cur.executemany(f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({marks})', batch)
                    batch = []
            if batch:
                cur.executemany(f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({marks})', batch)
        self.raw.commit()


def fill(records: int, postgres: bool, now) -> None:
    rng = random.Random(7)
    start = now - timedelta(days=DAYS)
    span = (now - start).total_seconds()
    at = lambda seconds: stamp(start + timedelta(seconds=seconds), postgres)  # noqa: E731
    true, false = (True, False) if postgres else (1, 0)
    raw = db.engine.raw_connection()
    loader = Loader(raw.driver_connection, postgres)
    created = stamp(start, postgres)
    loader.load("user_account", ["id", "email", "email_normalized", "is_verified", "is_admin", "status", "created_at",
                                 "session_epoch"],
                ((n, f"user{n}@example.com", f"user{n}@example.com", true, n == 1, "active", created, 0)
                 for n in range(1, USERS + 1)))
    loader.load("account", ["id", "user_id", "balance", "held", "created_at", "chain_head", "low_balance_threshold",
                            "low_balance_armed", "auto_topup_enabled", "auto_topup_threshold", "auto_topup_amount",
                            "auto_topup_monthly_limit"],
                ((n, n, 10**9, 0, created, "", 1_000_000, true, false, 5_000_000, 20_000_000, 100_000_000)
                 for n in range(1, USERS + 1)))
    loader.load("api_key", ["id", "user_id", "name", "key_hash", "hint", "created_at", "spent_total", "spent_month",
                            "spent_month_key", "held"],
                ((n, n, "bench", uuid.uuid4().hex * 2, "tg_…0000", created, 0, 0, "", 0) for n in range(1, USERS + 1)))
    loader.load("upstream", ["id", "name", "protocol", "dialect", "created_at"],
                ((n, f"upstream-{n}", "openai", "generic-openai", created) for n in range(1, UPSTREAMS + 1)))
    loader.load("model", ["id", "public_id", "upstream_id", "upstream_model", "max_output_tokens", "input_by_reference",
                          "unpriced_tier", "enabled", "created_at"],
                ((n, f"model-{n}", (n - 1) % UPSTREAMS + 1, f"m{n}", 4096, "hold", "refuse", true, created)
                 for n in range(1, MODELS + 1)))
    loader.load("model_price", ["id", "model_id", "input", "output", "effective_at"],
                ((n, n, 1_000_000 * n, 4_000_000 * n, created) for n in range(1, MODELS + 1)))
    has_cost = "upstream_cost" in UsageRecord.__table__.c
    columns = ["request_id", "account_id", "api_key_id", "model_id", "upstream_id", "price_id", "hold_amount", "route",
               "streamed", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
               "cache_write_1h_tokens", "input_audio_tokens", "output_audio_tokens", "reasoning_tokens",
               "long_context", "cost", "status", "usage_estimated", "usage_clamped", "http_status", "client_ip",
               "started_at", "first_byte_ms", "duration_ms"] + (["upstream_cost"] if has_cost else [])
    # Accounts by a rough power law: a few heavy users, many light ones.
    weights = [1 / n for n in range(1, USERS + 1)]
    accounts = rng.choices(range(1, USERS + 1), weights=weights, k=records)
    seconds = sorted(rng.random() * span for _ in range(records))

    def usage_rows():
        for n in range(records):
            model = rng.randrange(1, MODELS + 1)
            cost = rng.randrange(1, 50_000)
            failed = rng.random() < 0.02
            duration = int(rng.lognormvariate(7, 1))
            row = [f"req_{n:012d}", accounts[n], accounts[n], model, (model - 1) % UPSTREAMS + 1, model, cost * 2,
                   "chat", false, 500, 200, 0, 0, 0, 0, 0, 0, false, 0 if failed else cost,
                   "upstream_error" if failed else "ok", false, false, 200, "203.0.113.7", at(seconds[n]),
                   None if failed else duration // 4, duration]
            if has_cost:
                row.append(cost // 2 if model % 2 else None)
            yield row

    t = time.perf_counter()
    loader.load("usage_record", columns, usage_rows())
    loader.load("hold", ["account_id", "amount", "status", "memo", "api_key_id", "created_at", "closed_at"],
                ((accounts[n], 1_000, "settled", "", accounts[n], at(seconds[n]), at(seconds[n]))
                 for n in range(records)))
    loader.load("hold", ["account_id", "amount", "status", "memo", "api_key_id", "created_at"],
                ((n, 5_000 * n, "open", "", n, at(span - 60 * n)) for n in range(1, OPEN_HOLDS + 1)))
    loader.load("ledger_entry", ["account_id", "kind", "amount", "balance_after", "memo", "created_at", "entry_hash"],
                ((accounts[n], "charge", -1_000, 0, "", at(seconds[n]), "") for n in range(records)))
    loader.load("ledger_entry", ["account_id", "kind", "amount", "balance_after", "memo", "created_at", "entry_hash"],
                ((rng.randrange(1, USERS + 1), rng.choice(("refund", "dispute")), -rng.randrange(1, 10**8), 0, "",
                  at(rng.random() * span), "") for _ in range(RETURNS)))
    loader.load("payment", ["account_id", "source", "status", "amount", "refunded", "disputed", "created_at", "paid_at",
                            "auto_topup"],
                ((rng.randrange(1, USERS + 1), "stripe", "paid", rng.randrange(5, 500) * 1_000_000, 0, 0,
                  at(s), at(s), false) for s in (rng.random() * span for _ in range(PAYMENTS))))
    if postgres:
        raw.driver_connection.execute("ANALYZE")
        for table in ("user_account", "account", "api_key", "upstream", "model", "model_price", "hold", "ledger_entry",
                      "payment"):
            raw.driver_connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM \"{table}\"))")
        raw.driver_connection.commit()
    else:
        raw.driver_connection.execute("ANALYZE")
        raw.driver_connection.commit()
    raw.close()
    print(f"  filled {records:,} usage records (and as many holds and ledger entries) in "
          f"{time.perf_counter() - t:.0f} s")


def timed(fn, repeat: int) -> float:
    """Median wall time of `fn` in ms, each run in a fresh transaction."""
    times = []
    for _ in range(repeat):
        db.session.rollback()
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def measure(app, now, repeat: int) -> dict:
    from portal.views.admin.dashboards import index

    results = {}
    for days in dashboards.PERIODS:
        p = dashboards.Period(days, now)
        live_from = dashboards._live_from(p)

        def page():
            with app.test_request_context(f"/admin/?days={days}"):
                login_user(db.session.get(User, 1))
                index()

        runs = {"revenue": lambda: dashboards.revenue(p),
                "spend_per_day": lambda: dashboards.spend_per_day(p, live_from),
                "models": lambda: dashboards.models(p, live_from),
                "upstreams": lambda: dashboards.upstreams(p, live_from),
                "top_users": lambda: dashboards.top_users(p, live_from),
                "open_holds": dashboards.open_holds,
                "page": page}
        for name in QUERIES:
            results[(name, days)] = timed(runs[name], repeat)
    return results


def set_indexes(present: bool) -> None:
    with db.engine.begin() as conn:
        for name, (table, columns, where) in INDEXES.items():
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
            if present:
                conn.execute(text(f'CREATE INDEX {name} ON "{table}" {columns} {where}'))
        conn.execute(text("ANALYZE"))


def run(url: str, instance: str, records: int, repeat: int, label: str) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": instance, "SECRET_KEY": "bench",
                      "JOBS_INTERVAL_SECONDS": 0})
    postgres = url.startswith("postgresql")
    now = utcnow()
    with app.app_context():
        flask_migrate.upgrade()
        print(f"{label}:")
        fill(records, postgres, now)
        phases = {}
        set_indexes(False)
        phases["before"] = measure(app, now, repeat)
        set_indexes(True)
        phases["indexes"] = measure(app, now, repeat)
        db.session.rollback()
        t = time.perf_counter()
        rolled = dashboards.refresh_rollups(now)
        backfill = time.perf_counter() - t
        db.session.rollback()
        day = rolled[-1]
        t = time.perf_counter()
        dashboards.roll_up(day, now)
        one_day = (time.perf_counter() - t) * 1000
        phases["rollups"] = measure(app, now, repeat)
        print(f"  rollups: {len(rolled)} closed days rolled up in {backfill:.1f} s; one day (the job's hourly "
              f"share once caught up) {one_day:.0f} ms")
        out = io.StringIO()
        out.write("  | query | period | before (ms) | indexes (ms) | rollups (ms) |\n  | --- | --- | --- | --- | --- |\n")
        for name in QUERIES:
            for days in dashboards.PERIODS:
                out.write(f"  | {name} | {days} d | " + " | ".join(f"{phases[ph][(name, days)]:,.0f}"
                                                                  for ph in ("before", "indexes", "rollups")) + " |\n")
        print(out.getvalue(), end="")
        db.session.remove()
        db.engine.dispose()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows through a pipe too
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "postgres":
            run(f"sqlite:///{Path(tmp) / 'bench.db'}", tmp, args.records, args.repeat, "sqlite")
        server = os.environ.get("BENCH_POSTGRES_URL")
        if args.only == "sqlite":
            return
        if not server:
            print("postgres: skipped (set BENCH_POSTGRES_URL)")
            return
        admin = make_url(database_url(server))
        name = f"tollgate_bench_{uuid.uuid4().hex[:8]}"
        connect = dict(host=admin.host, port=admin.port or 5432, user=admin.username, password=admin.password,
                       dbname=admin.database, autocommit=True)
        with psycopg.connect(**connect) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = admin.set(database=name).render_as_string(hide_password=False)
            run(url, tmp, args.records, args.repeat, "postgres")
        finally:
            with psycopg.connect(**connect) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
