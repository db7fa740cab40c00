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
import collections
import fcntl
import logging
import os
import select
import threading
import time
import weakref
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Optional

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .extensions import db

WRITE = "tollgate_write"  # execution option that marks a connection's transaction as a writer
# WRITE's value for writes that may be taken back by a power loss (SQLite's synchronous=NORMAL): a
# call's hold and settlement, rate-limit counters. Any other write (True) is synced before its
# commit returns (synchronous=FULL): top-ups, refunds, grants, the portal's changes. docs/performance.md, "Durability".
FAST = "fast"
RETRY_AFTER_SECONDS = 5  # what a client is told to wait while the database is unreachable

# Postgres error classes that mean "the server cannot be reached or will not take us now":
# connection exceptions, operator intervention (shutdown, terminated backend), insufficient
# resources (too many connections), and a database that no longer exists (3D000).
_PG_UNAVAILABLE_CLASSES = ("08", "57", "53")
_PG_UNAVAILABLE_STATES = ("3D000",)
# SQLite's equivalents: the file cannot be opened or read, or the write lock did not come in time.
_SQLITE_UNAVAILABLE = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL")


log = logging.getLogger(__name__)
_quiet = {"until": 0.0, "missed": 0}
_quiet_lock = threading.Lock()


def log_unavailable(exc: BaseException, where: str) -> None:
    """Log that the database is unreachable: one line without a traceback, at most every 10 seconds.

    Every request fails the same way during an outage; a traceback each would bury the log. Only the
    driver's first line is logged (SQLAlchemy's message carries the statement and its parameters).
    """
    with _quiet_lock:
        now = time.monotonic()
        if now < _quiet["until"]:
            _quiet["missed"] += 1
            return
        missed, _quiet["missed"], _quiet["until"] = _quiet["missed"], 0, now + 10
    reason = str(getattr(exc, "orig", None) or exc.__class__.__name__).strip().splitlines()
    log.warning("database unreachable (%s on %s)%s; answering 503", reason[0] if reason else "no detail", where,
                f", {missed} more request(s) refused since the last line" if missed else "")


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable (a 503 to retry), not that a query is wrong (a bug).

    A pooled connection found dead, a connection that could not be made, an exhausted pool, a
    dropped database, a SQLite file that cannot be opened or stays locked.
    """
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no connection to give in time
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return False  # integrity, data and programming errors are ours, not the database's absence
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if type(orig).__module__.startswith("psycopg"):
        # No SQLSTATE: the client library could not talk to a server at all (refused, reset, timeout).
        return sqlstate is None or sqlstate[:2] in _PG_UNAVAILABLE_CLASSES or sqlstate in _PG_UNAVAILABLE_STATES
    name = getattr(orig, "sqlite_errorname", "") or ""
    if name:
        return name.startswith(_SQLITE_UNAVAILABLE)
    return "unable to open database file" in str(orig) or "database is locked" in str(orig)


class _WriterTurn:
    """This process's writers take their turn in order before asking SQLite for its write lock.

    SQLite makes a writer that finds the lock taken sleep and retry (1, 2, 5, ... 100 ms), so under
    load a waiter keeps losing to writers that arrive while it sleeps: at 16 clients some calls
    waited over a second for their hold or settlement while the median waited 30 ms. Here waiters
    queue first come, first served and each is woken the moment the one before it commits. The
    serving processes (WORKERS) then take turns among themselves on an flock()ed file beside the
    database, so one process's writer never sleeps in SQLite's retry while another's commits; other
    programs (the operator's commands) still meet SQLite's own wait. A turn not given within the
    busy timeout goes on to SQLite anyway, which then answers as before.
    """

    def __init__(self, timeout: float, lock_path: Optional[str] = None):
        self._timeout = timeout
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()
        self._holder = None  # the thread whose turn it is
        self._path = lock_path

    def _between_processes(self) -> Optional[int]:
        """The lock file, opened for this one turn: flock() excludes open files (a descriptor kept
        across a fork would be shared by the workers, which would then never exclude each other),
        and closing it lets go of the lock and leaks nothing. About 5 µs a turn."""
        if self._path is None:
            return None
        try:
            return os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning("no writer turns between processes (cannot open %s: %s)", self._path, exc)
            self._path = None
            return None

    @contextmanager
    def __call__(self):
        me = threading.get_ident()
        if self._holder == me:  # nested: the turn is already this thread's
            yield
            return
        with self._lock:
            if self._holder is None:  # free: no one to queue behind (and no Event to make and wake)
                self._holder = me
                waiter = None
            else:
                waiter = threading.Event()
                self._queue.append((me, waiter))
        if waiter is not None and not waiter.wait(self._timeout):
            with self._lock:
                if not waiter.is_set():  # (else the turn was handed over just now)
                    self._queue.remove((me, waiter))
            if not waiter.is_set():
                yield  # no turn in time: SQLite's own lock and timeout decide, as without turns
                return
        shared = None
        try:
            shared = self._between_processes()
            if shared is not None:
                # The other serving processes' writers too: each waits in the kernel and is woken the
                # moment the lock is free, where SQLite's own wait sleeps and retries (up to 100 ms a
                # time). A process that dies holding it loses it with its descriptors.
                fcntl.flock(shared, fcntl.LOCK_EX)
            yield
        finally:
            if shared is not None:
                os.close(shared)  # lets go of the lock
            with self._lock:  # hand the turn to the next writer in line, or free it
                if self._queue:
                    self._holder, following = self._queue.popleft()
                    following.set()
                else:
                    self._holder = None


def writer_turn(engine: Engine):
    """A context manager: this process's turn to write to `engine` (SQLite), or nothing to wait for."""
    turn = getattr(engine, "tollgate_writer_turn", None)
    return turn() if turn is not None else nullcontext()


def _closed_while_idle(dbapi_connection) -> bool:
    """Whether a pooled (idle) connection's socket has something to read: a server that restarted or
    ended the session sent its goodbye and closed it. Nothing is sent, so it costs no round trip."""
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # the driver already knows it is closed
        return True
    poller = select.poll()  # (not select.select: descriptors above 1023 are common with many streams)
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def configure_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Install per-dialect connection settings on a freshly created engine."""
    if engine.dialect.name == "postgresql":
        @event.listens_for(engine, "checkout")
        def _on_checkout(dbapi_connection, _record, _proxy):
            # In place of pool_pre_ping's SELECT (three round trips a call): an idle connection the
            # server closed is replaced before use, and a request never sees it.
            if _closed_while_idle(dbapi_connection):
                raise sa_exc.DisconnectionError("the server closed this pooled connection while it was idle")
        return
    if engine.dialect.name != "sqlite":
        return
    path = engine.url.database
    lock_path = f"{path}.writers" if path and path != ":memory:" and not path.startswith("file:") else None
    engine.tollgate_writer_turn = _WriterTurn(busy_timeout_ms / 1000, lock_path)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        record.info["synchronous"] = "NORMAL"
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        write = connection.get_execution_options().get(WRITE, False)
        # On the driver's connection: through exec_driver_sql this BEGIN cost each call about 3% of
        # its time. Its failure (the write lock not had within the busy timeout) still reaches the
        # caller as SQLAlchemy's error, which `unavailable` reads.
        pooled = connection.connection
        statements = []
        synchronous = None if not write else "NORMAL" if write == FAST else "FULL"
        if synchronous and pooled.info.get("synchronous") != synchronous:  # (kept with the pooled connection)
            statements.append(f"PRAGMA synchronous = {synchronous}")
        statements.append("BEGIN IMMEDIATE" if write else "BEGIN")
        for sql in statements:
            try:
                pooled.dbapi_connection.execute(sql)
            except connection.dialect.loaded_dbapi.Error as exc:
                connection._handle_dbapi_exception(exc, sql, (), None, None)
        if synchronous:
            pooled.info["synchronous"] = synchronous


def engine_beside(app, url: Optional[str] = None, *, pool_size: int, max_overflow: int) -> Engine:
    """A small engine of its own beside the app's, for work that runs while a request may hold one of
    the app's pooled connections (site settings, rate-limit counters): waiting there for a second
    one could take the whole pool, each request waiting for another. Set up like the app's engine
    (its options but the pool's size, `configure_engine`), and disposed with the app."""
    options = {key: value for key, value in app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}).items()
               if key not in ("pool_size", "max_overflow", "poolclass")}
    engine = create_engine(url or app.config["SQLALCHEMY_DATABASE_URI"], pool_size=pool_size,
                           max_overflow=max_overflow, **options)
    configure_engine(engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
    weakref.finalize(app, engine.dispose)  # no connection outlives its app (tests make many)
    return engine


# The connection of the write transaction `atomic()` has open in this context. Money statements run
# on it directly: asking the session for its connection again costs each statement the session's
# transaction bookkeeping (about 7% of a proxied call's interpreter time, docs/performance.md).
_writing: ContextVar = ContextVar("tollgate_write_connection", default=None)


def _open_writer():
    """The connection of the write transaction open in this context, if it is still open."""
    found = _writing.get()
    return found if found is not None and not found.closed and found.in_transaction() else None


def connection():
    """The connection to run a statement on inside `atomic()` (its transaction's), else the session's."""
    # Outside atomic(), or its transaction ended early (a nested atomic): the session's.
    return _open_writer() or db.session.connection()


@contextmanager
def writing():
    """A write transaction of statements only, on a connection of its own: commit on success, roll
    back on any exception. For the proxy's hold and settlement, which run Core statements only:
    the ORM session's transaction bookkeeping cost each call about 5% of its time. `connection()`
    inside the block is this transaction's. Code that needs ORM objects uses `atomic()`."""
    outer = _open_writer()
    if outer is not None:
        yield outer  # inside another write transaction: join it (a second writer would wait for it)
        return
    engine = db.engine
    with writer_turn(engine), engine.connect() as conn:
        conn.execution_options(**{WRITE: FAST})
        conn.begin()
        token = _writing.set(conn)
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            _writing.reset(token)


# Set while a session's transaction holds a flush: its changes are then in the database's transaction,
# out of sight of the session's new/dirty/deleted, and `end_reads` must not commit them.
_FLUSHED = "tollgate_flushed"


@event.listens_for(Session, "after_flush")
def _note_flush(session, _context):
    session.info[_FLUSHED] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_flush(session, transaction):
    if transaction.parent is None:
        session.info.pop(_FLUSHED, None)


def end_reads() -> None:
    """Give the session's connection back after a transaction that only read, ending it with COMMIT
    (a read-only transaction commits for the price of a rollback).

    Not ROLLBACK, which is how `close()` ends it: at each ROLLBACK psycopg forgets the statements
    it was counting towards preparing and deallocates those it prepared, so with the proxy's key
    lookup ended that way Postgres parsed and planned every money statement of every call anew
    (docs/performance.md). What the session loaded is expired and detached: for callers that kept
    plain values only. A session with changes, flushed or not, or whose transaction failed, is
    rolled back, as `close()` does: only a transaction that wrote nothing is committed."""
    session = db.session()
    transaction = session.get_transaction()
    if transaction is not None and transaction.is_active and not (
            session.new or session.dirty or session.deleted or session.info.get(_FLUSHED)):
        session.commit()
    session.close()


@contextmanager
def atomic():
    """Run the block as one transaction: commit on success, roll back on any exception.

    Any transaction the session already had (typically reads done while handling a request)
    is ended first, so the block starts with a fresh write transaction and sees current rows.
    """
    session = db.session()
    if session.in_transaction():
        session.commit()
    with writer_turn(db.engine):
        token = _writing.set(session.connection(execution_options={WRITE: True}))
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            _writing.reset(token)
