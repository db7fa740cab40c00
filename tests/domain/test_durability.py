"""SQLite: a call's hold and settlement commit with synchronous=NORMAL (a power loss may take back
the last few, the books still adding up), every other write with synchronous=FULL (synced before
its commit returns: a top-up acknowledged to Stripe survives a power loss). docs/performance.md."""
import pytest

from portal import database
from portal.extensions import db

NORMAL, FULL = 1, 2  # PRAGMA synchronous's answers


def synchronous() -> int:
    return database.connection().exec_driver_sql("PRAGMA synchronous").scalar()


@pytest.fixture
def sqlite_only(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's synchronous setting")


def test_each_kind_of_write_commits_with_its_own_durability(sqlite_only):
    # In turn on the same pooled connections, so a setting left behind by the other kind would show.
    for _ in range(3):
        with database.atomic():
            assert synchronous() == FULL
        with database.writing():
            assert synchronous() == NORMAL
        with database.writing(), database.writing():  # nested: joins the outer one
            assert synchronous() == NORMAL
    with database.atomic():
        assert synchronous() == FULL


def test_the_rate_limit_counters_commit_fast(sqlite_only, app):
    from portal.ratelimit import DatabaseCounters

    counters = DatabaseCounters.for_app(app)
    assert counters.hit("durability-test", 60) == 1
    with counters._connect() as conn:
        # The counter file's connection, as its last hit left it.
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == NORMAL
