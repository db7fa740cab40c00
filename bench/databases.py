"""Scratch databases for the load harness, and what a run wrote to them.

Each backend is migrated and seeded once into a template (bench/seed.py); every gateway run then
gets a fresh copy of it: a copied file on SQLite, CREATE DATABASE ... TEMPLATE on Postgres (on a
server we may create databases on; every database made here is dropped at the end).

A snapshot counts each table's rows and bytes. SQLite: the WAL is checkpointed into the file
first (TRUNCATE), so the file holds everything written; bytes per table from the dbstat table
(indexes counted with their table). Postgres: pg_total_relation_size (table, indexes, TOAST), and
the server's WAL position (cluster-wide: anything else writing to that server counts too).
"""
import shutil
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .procs import Processes, tail

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_TABLES = {"alembic_version"}


@dataclass
class Snapshot:
    rows: dict[str, int]
    bytes: dict[str, int]
    total_bytes: int
    wal_bytes: int = 0  # Postgres: the server's WAL position; SQLite: 0 (folded into the file)


@dataclass
class Written:
    """What N billed calls added: rows and bytes per call, by table."""

    calls: int
    rows: dict[str, float] = field(default_factory=dict)
    bytes: dict[str, float] = field(default_factory=dict)
    total_bytes: float = 0.0
    wal_bytes: float = 0.0


def written(before: Snapshot, after: Snapshot, calls_table: str = "usage_record") -> Written:
    calls = after.rows.get(calls_table, 0) - before.rows.get(calls_table, 0)
    if calls <= 0:
        return Written(calls=0)
    rows = {t: (after.rows[t] - before.rows.get(t, 0)) / calls for t in after.rows
            if after.rows[t] != before.rows.get(t, 0)}
    sizes = {t: (after.bytes[t] - before.bytes.get(t, 0)) / calls for t in after.bytes
             if after.bytes[t] != before.bytes.get(t, 0)}
    return Written(calls=calls, rows=rows, bytes=sizes, total_bytes=(after.total_bytes - before.total_bytes) / calls,
                   wal_bytes=(after.wal_bytes - before.wal_bytes) / calls)


class Sqlite:
    name = "SQLite"

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.template = folder / "template.db"
        self.runs = 0

    def template_url(self) -> str:
        return f"sqlite:///{self.template}"

    def fresh(self) -> str:
        """A new database, copied from the seeded template."""
        self.runs += 1
        path = self.folder / f"run{self.runs}.db"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def snapshot(self, url: str) -> Snapshot:
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path, timeout=30) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                 "AND name NOT LIKE 'sqlite_%'") if r[0] not in SKIPPED_TABLES]
            rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
            owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"))
            sizes = dict.fromkeys(tables, 0)
            for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                table = owner.get(name, name)
                if table in sizes:
                    sizes[table] += size
        conn.close()
        return Snapshot(rows=rows, bytes=sizes, total_bytes=Path(path).stat().st_size)

    def drop_all(self) -> None:
        pass  # the files go with the harness's temporary folder


class Postgres:
    name = "Postgres"

    def __init__(self, server_url: str):
        from sqlalchemy.engine import make_url

        from portal.config import database_url

        self.admin = make_url(database_url(server_url))
        self.prefix = f"tollgate_bench_{uuid.uuid4().hex[:8]}"
        self.template_name = f"{self.prefix}_template"
        self.made: list[str] = []
        self.runs = 0

    def _connect(self, dbname: str = None):
        import psycopg

        a = self.admin
        return psycopg.connect(host=a.host or "127.0.0.1", port=a.port or 5432, user=a.username, password=a.password,
                               dbname=dbname or a.database or "postgres", autocommit=True, connect_timeout=5)

    def check(self) -> None:
        """Raise unless the server answers and lets us create databases."""
        with self._connect() as conn:
            conn.execute("SELECT 1")

    def _url(self, name: str) -> str:
        return self.admin.set(database=name).render_as_string(hide_password=False)

    def _create(self, name: str, template: str = None) -> str:
        with self._connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.made.append(name)
        return self._url(name)

    def template_url(self) -> str:
        return self._create(self.template_name)

    def fresh(self) -> str:
        self.runs += 1
        return self._create(f"{self.prefix}_run{self.runs}", template=self.template_name)

    def snapshot(self, url: str) -> Snapshot:
        from sqlalchemy.engine import make_url

        with self._connect(make_url(url).database) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'") if r[0] not in SKIPPED_TABLES]
            rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
            sizes = {t: conn.execute("SELECT pg_total_relation_size(%s::regclass)", (f'"{t}"',)).fetchone()[0]
                     for t in tables}
            wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()[0]
        return Snapshot(rows=rows, bytes=sizes, total_bytes=sum(sizes.values()), wal_bytes=int(wal))

    def drop_all(self) -> None:
        if not self.made:
            return
        with self._connect() as conn:
            for name in reversed(self.made):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made = []


def seed(processes: Processes, env: dict, spec_path: Path) -> dict:
    """Migrate and seed the database env["DATABASE_URL"] (bench/seed.py); its JSON answer."""
    import json

    log = processes.logs / "seed.log"
    with log.open("ab") as f:
        done = subprocess.run([sys.executable, "-m", "bench.seed", str(spec_path)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=f, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"seeding {env['DATABASE_URL']} failed:\n{done.stdout.decode()}\n{tail(log)}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])
