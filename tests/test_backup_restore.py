"""Backups as docs/operating.md tells the operator to take them, restored, with the books checked.

SQLite: an online backup of the live database (sqlite3's backup API, and the `sqlite3` shell's
`.backup` when it is installed) while the app holds it open in WAL mode. Postgres: `pg_dump`
of the live database, restored with `psql` into a fresh one. In both cases the copy opens, has
the data, and `flask ledger verify` passes on it.
"""
import shutil
import sqlite3
import subprocess
import uuid

import pytest
from sqlalchemy.engine import make_url

from portal import create_app, ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import EntryKind
from tests.factories import make_user


def some_books():
    """Two people with credit, a charge and a refund: entries the hash chain covers."""
    first = make_user("first@example.com", credit=5_000_000)
    second = make_user("second@example.com", credit=1_000_000)
    with atomic():
        hold = ledger.hold(first.account.id, 300_000)
    with atomic():
        ledger.settle(hold, 123_456)
        ledger.debit(second.account.id, 250_000, EntryKind.REFUND, memo="refund request 1",
                     reference="refund-by-hand:1:1")
    return {first.email: 5_000_000 - 123_456, second.email: 750_000}


def check_copy(url, tmp_path, balances):
    """Open the restored copy as the app would, and run `ledger verify` on it."""
    copy = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(tmp_path / "restored"),
                       "SECRET_KEY": "t", "JOBS_INTERVAL_SECONDS": 0})
    with copy.app_context():
        result = copy.test_cli_runner().invoke(args=["ledger", "verify"])
        assert result.exit_code == 0, result.output
        from portal.models import Account, User
        found = {email: balance for email, balance in db.session.execute(
            db.select(User.email, Account.balance).join(Account, Account.user_id == User.id))}
        assert found == balances
        db.session.remove()
        db.engine.dispose()


def test_sqlite_online_backup_restores_with_clean_books(app, database, tmp_path):
    if database.name != "sqlite":
        pytest.skip("the SQLite half; the Postgres half runs on Postgres")
    balances = some_books()
    live = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    # The app keeps its connection (and its WAL) open: this is a backup of a live database.
    db.session.execute(db.text("SELECT 1"))
    backup = tmp_path / "backup.db"
    with sqlite3.connect(live) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    check_copy(f"sqlite:///{backup}", tmp_path, balances)

    shell = shutil.which("sqlite3")
    if shell:  # the command docs/operating.md gives
        dotted = tmp_path / "dotted.db"
        subprocess.run([shell, live, f".backup '{dotted}'"], check=True, timeout=60)
        check_copy(f"sqlite:///{dotted}", tmp_path, balances)


def test_postgres_dump_restores_into_a_fresh_database_with_clean_books(app, database, tmp_path):
    if database.name != "postgres":
        pytest.skip("the Postgres half runs on Postgres (set TEST_DATABASE_URL)")
    missing = [tool for tool in ("pg_dump", "psql") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: apt-get install postgresql-client)")
    balances = some_books()
    live = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    dump = tmp_path / "tollgate.sql"
    subprocess.run(["pg_dump", "--no-owner", "--file", str(dump),
                    live.render_as_string(hide_password=False)], check=True, timeout=120)
    name = f"tollgate_restore_{uuid.uuid4().hex[:12]}"
    with database._admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        fresh = live.set(database=name).render_as_string(hide_password=False)
        subprocess.run(["psql", "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--file", str(dump), fresh],
                       check=True, timeout=120, stdout=subprocess.DEVNULL)
        check_copy(live.set(database=name, drivername="postgresql+psycopg").render_as_string(hide_password=False),
                   tmp_path, balances)
    finally:
        with database._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
