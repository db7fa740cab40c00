"""What a rate-limit hit costs in each counter store (portal/ratelimit.py).

The database store is what several serving processes without Redis use: one upsert per hit, in its
own short transaction. A /v1 call makes one hit per request limit in force (two with both a key
and an account limit), one read per token limit, and one hit per token limit at settlement.
Usage: python -m bench.ratelimit_bench [--hits 2000] [--postgres URL] [--redis URL]
"""
import argparse
import os
import statistics
import tempfile
import time
import uuid

from portal import create_app
from portal.ratelimit import DatabaseCounters, MemoryCounters, RedisCounters


def timed(store, hits: int) -> list[float]:
    """Microseconds per hit, on a few keys as a burst of calls would."""
    samples = []
    for i in range(hits):
        started = time.perf_counter()
        store.hit(f"bench:{i % 8}", 60)
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def summary(name: str, samples: list[float]) -> str:
    samples = sorted(samples)
    p90 = samples[int(0.9 * len(samples))]
    return f"{name:<10} p50 {statistics.median(samples):8.1f} µs   p90 {p90:8.1f} µs"


def database_store(url: str, instance: str):
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": instance, "SECRET_KEY": "bench",
                      "REDIS_URL": ""})
    with app.app_context():
        import flask_migrate
        flask_migrate.upgrade()
    return app, DatabaseCounters.for_app(app)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--postgres",
                        default=os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("TEST_DATABASE_URL", ""),
                        help="a Postgres database to create the table in (it is migrated)")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", ""))
    args = parser.parse_args()
    print(summary("memory", timed(MemoryCounters(), args.hits)))
    with tempfile.TemporaryDirectory() as tmp:
        app, store = database_store(f"sqlite:///{tmp}/bench.db", tmp)
        with app.app_context():
            print(summary("sqlite", timed(store, args.hits)))
        if args.postgres:
            import psycopg
            from sqlalchemy.engine import make_url

            from portal.config import database_url
            admin = make_url(database_url(args.postgres))
            name = f"tollgate_bench_{uuid.uuid4().hex[:8]}"
            connect = dict(host=admin.host, port=admin.port or 5432, user=admin.username, password=admin.password,
                           dbname=admin.database, autocommit=True)
            with psycopg.connect(**connect) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                url = admin.set(database=name).render_as_string(hide_password=False)
                app, store = database_store(url, tmp)
                with app.app_context():
                    print(summary("postgres", timed(store, args.hits)))
                store._engine.dispose()
                from portal.extensions import db
                with app.app_context():
                    db.engine.dispose()
            finally:
                with psycopg.connect(**connect) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.redis:
        prefix = f"tollgate-bench:{uuid.uuid4().hex}:"
        store = RedisCounters(args.redis, prefix)
        print(summary("redis", timed(store, args.hits)))
        for key in store._redis.scan_iter(match=prefix + "*"):
            store._redis.delete(key)


if __name__ == "__main__":
    main()
