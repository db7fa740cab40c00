"""The audit log: entries land with the action, secrets never do, and the database refuses edits."""
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from portal import audit
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry
from tests.factories import make_admin


def test_an_entry_records_who_what_where_and_the_change(app):
    admin = make_admin()
    with atomic():
        entry = audit.record(audit.Actor.admin(admin, "203.0.113.9"), "user.suspend", "user", 42,
                             reason="spam", before={"status": "active"}, after={"status": "suspended"})
    db.session.rollback()
    stored = db.session.get(AuditEntry, entry.id)
    assert (stored.actor, stored.actor_id, stored.ip) == (admin.email, admin.id, "203.0.113.9")
    assert (stored.action, stored.target_type, stored.target_id, stored.reason) == ("user.suspend", "user", "42", "spam")
    assert audit.changes(stored.before, stored.after) == [("status", "active", "suspended")]
    assert stored.at is not None and stored.at.tzinfo is not None


def test_the_command_line_is_an_actor_too(app):
    with atomic():
        entry = audit.record(audit.Actor.cli(), "credits.adjust", "user", 7)
    assert entry.actor.startswith("cli:") and entry.actor_id is None and entry.ip is None


def test_secrets_are_masked_whatever_the_caller_passes(app):
    with atomic():
        entry = audit.record(audit.Actor.cli(), "upstream.update", "upstream", "openai",
                             before={"api_key": "sk-old-secret", "base_url": "https://a"},
                             after={"api_key": "sk-new-secret", "nested": {"password": "hunter2"}, "none": None})
    db.session.rollback()
    stored = db.session.get(AuditEntry, entry.id)
    dumped = repr((stored.before, stored.after))
    assert "sk-old-secret" not in dumped and "sk-new-secret" not in dumped and "hunter2" not in dumped
    assert stored.after["api_key"] == "(set)" and stored.after["nested"]["password"] == "(set)"


def test_nothing_is_written_when_the_action_fails(app):
    with pytest.raises(RuntimeError), atomic():
        audit.record(audit.Actor.cli(), "user.terminate", "user", 1)
        raise RuntimeError("the action failed after its entry")
    db.session.rollback()
    assert db.session.query(AuditEntry).count() == 0


@pytest.mark.parametrize("statement", [
    "UPDATE audit_entry SET reason = 'rewritten'",
    "UPDATE audit_entry SET actor = 'someone else' WHERE id = :id",
    "DELETE FROM audit_entry WHERE id = :id",
    "DELETE FROM audit_entry",
])
def test_the_database_refuses_to_change_or_remove_entries(app, statement):
    with atomic():
        entry_id = audit.record(audit.Actor.cli(), "price.set", "model", "m", reason="original").id
    with pytest.raises(DatabaseError, match="append-only"), atomic():
        db.session.execute(text(statement), {"id": entry_id})
    db.session.rollback()
    stored = db.session.get(AuditEntry, entry_id)
    assert (stored.reason, stored.actor.startswith("cli:")) == ("original", True)


def test_postgres_refuses_truncate_too(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE is Postgres's; SQLite has none")
    with atomic():
        audit.record(audit.Actor.cli(), "price.set", "model", "m")
    with pytest.raises(DatabaseError, match="append-only"), atomic():
        db.session.execute(text("TRUNCATE audit_entry"))
    db.session.rollback()
    assert db.session.query(AuditEntry).count() == 1
