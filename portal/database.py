"""Engine setup and transaction boundaries.

SQLite: WAL so readers never block the writer, a busy timeout so writers queue instead of
failing, and every write transaction opened with BEGIN IMMEDIATE. pysqlite's own BEGIN is
switched off (isolation_level=None) and SQLAlchemy's "begin" event emits ours, the recipe from
SQLAlchemy's SQLite dialect docs. A deferred transaction that reads and then writes can fail
with SQLITE_BUSY_SNAPSHOT regardless of the timeout; taking the write lock up front means
concurrent writers wait their turn and never lose an update.

Only `atomic()` opens write transactions. Plain reads (loading the logged-in user, rendering a
page) begin deferred, so they never hold the write lock while a request renders or streams.
All writes therefore go through `atomic()`.
"""
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db

WRITE = "tollgate_write"  # execution option that marks a connection's transaction as a writer


def configure_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Install per-dialect connection settings on a freshly created engine."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        write = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def atomic():
    """Run the block as one transaction: commit on success, roll back on any exception.

    Any transaction the session already had (typically reads done while handling a request)
    is ended first, so the block starts with a fresh write transaction and sees current rows.
    """
    session = db.session()
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={WRITE: True})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
