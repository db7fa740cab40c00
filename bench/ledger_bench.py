"""Holds per second: threads doing hold -> settle cycles against one account, on SQLite and Postgres.

Usage: python -m bench.ledger_bench [--threads 8] [--cycles 2000]
Postgres is measured when BENCH_POSTGRES_URL (a server we may create a scratch database on) is set.
"""
import argparse
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import flask_migrate
import psycopg
from sqlalchemy.engine import make_url

from portal import create_app, ledger, users
from portal.config import database_url
from portal.database import atomic
from portal.extensions import db
from portal.models import EntryKind


def run(url: str, threads: int, cycles: int, instance: str) -> float:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": instance, "SECRET_KEY": "bench",
                      "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": threads, "max_overflow": 0}})
    with app.app_context():
        flask_migrate.upgrade()
        with atomic():
            account_id = users.create_user(f"bench-{uuid.uuid4().hex[:6]}@example.com").account.id
            ledger.credit(account_id, 10**12, EntryKind.GRANT, memo="bench")
    per_thread = cycles // threads

    def worker():
        with app.app_context():
            for _ in range(per_thread):
                with atomic():
                    hold_id = ledger.hold(account_id, 1_000)
                with atomic():
                    ledger.settle(hold_id, 700)
            db.session.remove()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    with app.app_context():
        problems = ledger.verify()
        db.engine.dispose()
    if problems:
        raise SystemExit(f"ledger verify failed: {problems[:3]}")
    return per_thread * threads / elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rate = run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.threads, args.cycles, tmp)
        print(f"sqlite   : {rate:8.0f} hold+settle cycles/s ({args.threads} threads, {args.cycles} cycles)")
        server = os.environ.get("BENCH_POSTGRES_URL")
        if not server:
            print("postgres : skipped (set BENCH_POSTGRES_URL)")
            return
        admin = make_url(database_url(server))
        name = f"tollgate_bench_{uuid.uuid4().hex[:8]}"
        connect = dict(host=admin.host, port=admin.port or 5432, user=admin.username, password=admin.password,
                       dbname=admin.database, autocommit=True)
        with psycopg.connect(**connect) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = admin.set(database=name).render_as_string(hide_password=False)
            rate = run(url, args.threads, args.cycles, tmp)
            print(f"postgres : {rate:8.0f} hold+settle cycles/s ({args.threads} threads, {args.cycles} cycles)")
        finally:
            with psycopg.connect(**connect) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
