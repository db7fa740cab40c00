"""SQLite's write lock held elsewhere past the busy timeout: the writer gets SQLAlchemy's error that
database.unavailable() reads as an outage (a 503 to retry), and nothing is written."""
import sqlite3

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from portal import database, ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, EntryKind
from tests.factories import make_user


@pytest.fixture
def app_config(app_config):
    return {**app_config, "SQLITE_BUSY_TIMEOUT_MS": 50}


def test_a_writer_that_cannot_get_the_lock_gets_an_outage_error_and_writes_nothing(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    user = make_user()
    db.session.rollback()
    other = sqlite3.connect(db.engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
    try:
        with pytest.raises(OperationalError) as raised, atomic():
            ledger.credit(user.account.id, 500, EntryKind.GRANT, memo="blocked")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert database.unavailable(raised.value)
    assert "locked" in str(raised.value.orig) or "busy" in str(raised.value.orig).lower()
    db.session.rollback()
    assert db.session.scalar(select(Account.balance).where(Account.id == user.account.id)) == 0
    with atomic():  # the lock is free again: the same write goes through
        ledger.credit(user.account.id, 500, EntryKind.GRANT, memo="after")
    db.session.rollback()
    assert db.session.scalar(select(Account.balance).where(Account.id == user.account.id)) == 500
