"""database.end_reads: a transaction that only read ends with COMMIT; anything else is rolled back, never written."""
import pytest
from sqlalchemy import event, select

from portal import database
from portal.extensions import db
from portal.models import User
from tests.factories import make_user


def ends(app, action) -> list[str]:
    seen = []
    listeners = {"commit": lambda conn: seen.append("commit"), "rollback": lambda conn: seen.append("rollback")}
    for name, listener in listeners.items():
        event.listen(db.engine, name, listener)
    try:
        action()
    finally:
        for name, listener in listeners.items():
            event.remove(db.engine, name, listener)
    return seen


def test_reads_end_with_a_commit(app):
    make_user("reader@example.com")
    db.session.close()

    def read():
        assert db.session.scalar(select(User.email)) == "reader@example.com"
        database.end_reads()
    assert ends(app, read) == ["commit"]
    assert not db.session().in_transaction()


@pytest.mark.parametrize("flushed", [False, True])
def test_a_change_is_rolled_back_not_written(app, flushed):
    user_id = make_user("keep@example.com").id
    db.session.close()

    def change():
        db.session.get(User, user_id).email = "changed@example.com"  # outside atomic(): must not be written
        if flushed:
            db.session.flush()  # in the database's transaction now, no longer in the session's dirty set
        database.end_reads()
    assert ends(app, change) == ["rollback"]
    assert db.session.scalar(select(User.email).where(User.id == user_id)) == "keep@example.com"


def test_after_a_committed_write_a_read_still_commits(app):
    user_id = make_user("writer@example.com").id
    db.session.close()

    def write_then_read():
        with database.atomic():
            db.session.get(User, user_id).email = "written@example.com"
        assert db.session.scalar(select(User.email).where(User.id == user_id)) == "written@example.com"
        database.end_reads()
    assert ends(app, write_then_read) == ["commit", "commit"]


def test_a_new_object_is_rolled_back_not_written(app):
    make_user("one@example.com")
    db.session.close()

    def add():
        db.session.scalar(select(User.id))
        db.session.add(User(email="two@example.com", password_hash="x"))
        database.end_reads()
    assert ends(app, add) == ["rollback"]
    assert db.session.scalars(select(User.email)).all() == ["one@example.com"]


def test_nothing_read_ends_nothing(app):
    db.session.close()
    assert ends(app, database.end_reads) == []
