"""Fixtures: an app built by the factory on a migrated database, per backend.

Every test that touches the database runs on SQLite, and again on Postgres when
TEST_DATABASE_URL names a server: the suite creates its own database there and drops it at
the end. The schema always comes from the migrations, never from create_all. Tests marked
`one_backend` check rules no database can change (how a request or a usage object is read,
price arithmetic) and run on SQLite only; the money they move is tested on both elsewhere.
"""
import contextvars
import os
import shutil
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import flask_migrate
import psycopg
import redis
import pytest
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from portal import create_app, ledger, notices, serving, sitesettings
from portal.config import database_url
from portal.extensions import db

def pytest_collection_modifyitems(config, items):
    once = [item for item in items if item.get_closest_marker("one_backend")
            and getattr(item, "callspec", None) is not None and item.callspec.params.get("database") == "postgres"]
    if once:
        config.hook.pytest_deselected(items=once)
        dropped = set(once)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture(autouse=True, scope="session")
def light_password_hashing():
    """argon2id at its smallest parameters: the same code paths at a fraction of the CPU.

    Tests hash and check hundreds of passwords; at the production parameters that is minutes of
    a 2-core machine. Hashes made here still verify like any argon2 hash.
    """
    from argon2 import PasswordHasher

    from portal import users
    production = users._hasher
    users._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    yield
    users._hasher = production


@pytest.fixture(autouse=True, scope="session")
def no_secrets_in_logs(light_password_hashing, tmp_path_factory):
    """Every log record of the run goes to a file; at the end, no secret the tests used may be in it.

    A leak fails the session (an error at the last test's teardown) naming the loggers, never
    the secret. See tests/secretlog.py.
    """
    from portal import apikeys, users
    from tests import factories, fake_stripe, fake_upstream
    from tests.secretlog import SecretLog, capture_all, recording_hasher

    log = SecretLog(tmp_path_factory.mktemp("logs") / "all-records.log")
    for secret in (fake_upstream.OPENAI_KEY, fake_upstream.ANTHROPIC_KEY, fake_stripe.SECRET_KEY,
                   fake_stripe.WEBHOOK_SECRET, factories.PASSWORD, factories.ADMIN_TOTP_SECRET):
        log.remember(secret)
    hasher, issue = users._hasher, apikeys.issue
    users._hasher = recording_hasher(log, time_cost=1, memory_cost=64, parallelism=1)

    def issue_recorded(*args, **kwargs):
        key, plaintext = issue(*args, **kwargs)
        log.remember(plaintext)
        return key, plaintext

    apikeys.issue = issue_recorded
    undo = capture_all(log)
    yield log
    undo()
    apikeys.issue, users._hasher = issue, hasher
    log.close()
    leaks = log.leaks()
    if leaks:
        pytest.fail(f"secrets used by the tests were logged, by: {', '.join(sorted(leaks))} "
                    f"(records: {leaks}; the full log: {log.path})", pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def offline_names():
    """Host names other than localhost fail to resolve at once, as they would here anyway.

    This machine has no network, so no public name ever resolves; but asking the system's resolver
    still sends a query, and when that packet is lost the answer takes five seconds. Saving an
    upstream resolves its host (portal.egress), so a few lost packets cost the suite half a minute
    at random. Tests that need a name to resolve replace `egress.resolver` themselves.
    """
    from portal import egress
    real = egress.resolver
    egress.resolver = offline(real)
    yield
    egress.resolver = real


def offline(resolve):
    """A resolver that asks `resolve` about localhost only; any other name fails at once (no network here)."""
    import socket

    def resolver(host: str, port: int):
        if host.lower().rstrip(".") == "localhost":
            return resolve(host, port)
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: no network here")

    return resolver


@pytest.fixture(autouse=True, scope="session")
def shared_url_builders():
    """One compiled URL builder per distinct rule, shared by the apps the suite makes.

    Werkzeug compiles a builder function for each rule of each app (about a millisecond each, and
    the app has over a hundred rules); the suite makes an app per test, so compiling the same rules
    again was minutes of the run. The builder is a pure function of the rule's shape: it reaches
    the converters through the rule it is bound to when called, so rules of one shape can share
    it. Rules whose defaults cannot be a key are compiled as usual.
    """
    from werkzeug.routing.rules import Rule

    original = Rule._compile_builder
    compiled = {}

    def compile_builder(self, append_unknown=True):
        try:
            key = (self.rule, tuple(self._trace), tuple(sorted((self.defaults or {}).items())), append_unknown)
            hash(key)
        except TypeError:
            return original(self, append_unknown)
        if key not in compiled:
            compiled[key] = original(self, append_unknown)
        return compiled[key]

    Rule._compile_builder = compile_builder
    yield
    Rule._compile_builder = original


BACKENDS = ["sqlite"] + (["postgres"] if os.environ.get("TEST_DATABASE_URL") else [])


def migrate(url: str, instance: Path) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(instance), "SECRET_KEY": "t"})
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


class SqliteDatabase:
    """A migrated template file, copied for each test (cheaper than migrating every time)."""

    name = "sqlite"

    def __init__(self, root: Path):
        self.root = root
        self.template = root / "template.db"
        migrate(f"sqlite:///{self.template}", root)
        with sqlite3.connect(self.template) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def fresh(self) -> str:
        path = self.root / f"test-{uuid.uuid4().hex}.db"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    @contextmanager
    def empty(self):
        """A new, empty database (no migrations run)."""
        yield f"sqlite:///{self.root / f'empty-{uuid.uuid4().hex}.db'}"

    def close(self) -> None:
        pass


class PostgresDatabase:
    """A database of our own on the given server, migrated once and emptied for each test."""

    name = "postgres"

    def __init__(self, server_url: str, root: Path):
        self.admin_url = make_url(database_url(server_url))
        self.dbname = f"tollgate_test_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.url = self.admin_url.set(database=self.dbname).render_as_string(hide_password=False)
        migrate(self.url, root)
        # Emptying the tables between tests: DELETE (with triggers, including the ledger's
        # append-only guard, off for this transaction) and restarting the id sequences is a
        # quarter of TRUNCATE's cost on tables this small, and TRUNCATE ran before every test.
        url = make_url(self.url)
        with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                             dbname=self.dbname) as conn:
            sequences = [row[0] for row in conn.execute("SELECT sequence_name FROM information_schema.sequences")]
        self.clear = ("SET LOCAL session_replication_role = replica;"
                         + "".join(f'DELETE FROM "{t.name}";' for t in reversed(db.metadata.sorted_tables))
                         + "".join(f'ALTER SEQUENCE "{name}" RESTART;' for name in sequences))

    def _admin(self):
        url = self.admin_url
        return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                               password=url.password, dbname=url.database, autocommit=True)

    def fresh(self) -> str:
        url = make_url(self.url)
        with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                             password=url.password, dbname=self.dbname) as conn:
            conn.execute(self.clear)  # one transaction, committed on leaving the block
        return self.url

    @contextmanager
    def empty(self):
        """A new, empty database of our own, dropped afterwards."""
        name = f"tollgate_empty_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with self._admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


@pytest.fixture(scope="session", params=BACKENDS)
def database(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    backend = (SqliteDatabase(root) if request.param == "sqlite"
               else PostgresDatabase(os.environ["TEST_DATABASE_URL"], root))
    yield backend
    backend.close()


def make_app(database, tmp_path, **overrides):
    config = {"TESTING": True, "SECRET_KEY": "test-secret", "WTF_CSRF_ENABLED": False,
              # The test client's default host; mail links and pages say http://localhost/...
              "PUBLIC_URL": "http://localhost",
              "SQLALCHEMY_DATABASE_URI": database.fresh(), "INSTANCE_PATH": str(tmp_path / "instance"),
              # Each test its own Redis keys (when REDIS_URL is set), removed afterwards.
              "REDIS_PREFIX": f"tollgate-test:{uuid.uuid4().hex}:"}
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app_config():
    """Extra configuration for the `app` fixture; test packages override this."""
    return {}


@pytest.fixture
def app(database, tmp_path, app_config, request):
    app = make_app(database, tmp_path, **app_config)
    with app.app_context():
        yield app
        # Mail queued for the background sender runs in this app's database: let it finish before
        # the next test empties it (a late reader could block or deadlock with that).
        notices.drain()
        if request.node.get_closest_marker("books_broken") is None:
            # Whatever a test did, the books still add up: every balance, held amount and key counter.
            db.session.rollback()
            assert ledger.verify() == [], "flask ledger verify is not clean after this test"
        app.extensions["tollgate.gateway"].close()
        db.session.remove()
        db.engine.dispose()
        sitesettings.dispose(app)
        forget_redis_keys(app)


def forget_redis_keys(app) -> None:
    if app.config["REDIS_URL"]:
        client = redis.Redis.from_url(app.config["REDIS_URL"])
        keys = list(client.scan_iter(match=app.config["REDIS_PREFIX"] + "*"))
        if keys:
            client.delete(*keys)
        client.close()


class IsolatedClient(FlaskClient):
    """Each request runs as in production: in its own app context, with a fresh `g` and session.

    The test itself holds an app context for its own database work; without this, requests
    would share that context (and Flask-Login's cached user, and stale ORM objects) with it.
    """

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)  # a streamed body is read inside the request's own context
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture
def client(app):
    app.test_client_class = IsolatedClient
    return app.test_client()


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args, input=None):
        db.session.rollback()  # like a new process: see what is committed now
        return runner.invoke(args=list(args), input=input)
    return invoke


@contextmanager
def served_in_thread(app):
    """The app on waitress, configured as `serve` configures it, in a thread; the server."""
    server = serving.create(app, "127.0.0.1", 0, asyncore_loop_timeout=0.05)  # quick to stop
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server
    server.close()
    for channel in list(server._map.values()):  # keep-alive client connections end the run loop too
        channel.close()
    server.task_dispatcher.shutdown(timeout=5)
    thread.join(timeout=5)
    assert not thread.is_alive(), "waitress did not stop"


@pytest.fixture
def gateway(app):
    """Base URL of the app served by waitress in a thread, as `make run` serves it."""
    with served_in_thread(app) as server:
        yield f"http://127.0.0.1:{server.effective_port}"


@pytest.fixture
def fake():
    """A fake upstream of this test's own: no request left over from another test can take its script."""
    from tests.fake_upstream import FakeUpstream
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def fake_stripe():
    """A fake of Stripe's API on loopback, one per test (see tests/fake_stripe.py)."""
    from tests.fake_stripe import FakeStripe
    fake = FakeStripe()
    yield fake
    fake.close()


def stripe_settings(fake) -> dict:
    """App configuration that points the Stripe gateway at `fake`."""
    from tests.fake_stripe import SECRET_KEY, WEBHOOK_SECRET
    return {"STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_API_BASE": fake.url}
