"""`terms|privacy|refund-policy publish --effective`, `status` and `notify`: the console's twins."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import legal
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry, LegalKind, User
from tests.cli.test_cli import ok, refused
from tests.factories import make_user
from tests.web.helpers import outbox, publish_terms


@pytest.fixture
def document(tmp_path):
    path = tmp_path / "terms.md"
    path.write_text("# New terms\n\nBe kind.\n", encoding="utf-8")
    return str(path)


def in_days(days: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).date().isoformat()


def test_publish_with_an_effective_date_mails_the_notice_and_is_audited(app, cli, document):
    publish_terms("v1")
    make_user("a@example.com")
    make_user("b@example.com")
    make_user("c@example.com", verified=False)
    date = in_days(30)
    out = ok(cli("terms", "publish", document, "--version", "v2", "--significant", "--effective", date,
                 "--reason", "new limits"))
    assert f"published terms version v2 (significant: in force from {date}; users must accept it from then)" in out
    assert "mailed the advance notice to 2 people" in out
    assert sorted(m["To"] for m in outbox(app)) == ["a@example.com", "b@example.com"]
    db.session.rollback()
    assert legal.current(LegalKind.TERMS).version == "v1" and legal.upcoming(LegalKind.TERMS)[0].version == "v2"
    [entry] = db.session.scalars(select(AuditEntry)).all()
    assert (entry.action, entry.actor, entry.reason) == ("legal.publish", Actor.cli().label, "new limits")
    assert entry.after["effective_at"] == f"{date}T00:00:00+00:00"


def test_notify_resumes_without_mailing_twice(app, cli, document):
    publish_terms("v1")
    make_user("a@example.com")
    with atomic():  # published, and the process stopped before any notice went out
        legal.publish(LegalKind.TERMS, "v2", "# v2", significant=True,
                      effective_at=datetime.now(timezone.utc) + timedelta(days=30))
    assert "mailed the advance notice to 1 person" in ok(cli("terms", "notify", "v2"))
    assert "mailed the advance notice to 0 people" in ok(cli("terms", "notify", "v2"))
    make_user("late@example.com")
    assert "mailed the advance notice to 1 person" in ok(cli("terms", "notify", "v2"))
    assert sorted(m["To"] for m in outbox(app)) == ["a@example.com", "late@example.com"]
    db.session.rollback()
    assert [e.action for e in db.session.scalars(select(AuditEntry))] == ["legal.notify"] * 3
    refused(cli("terms", "notify", "v1"), "there is no advance notice to send")
    refused(cli("terms", "notify", "nope"), "there is no terms version 'nope'")


@pytest.mark.parametrize("args, message", [
    (["--effective", "2999-01-01"], "Only a significant change can take effect later"),
    (["--significant", "--effective", "2020-01-01"], "must be in the future"),
    (["--significant", "--effective", "soon"], "is not a date"),
    (["--significant", "--effective", "2999-01-01T10:00:00"], "has no timezone"),
])
def test_publish_refuses_bad_effective_dates(app, cli, document, args, message):
    publish_terms("v1")
    refused(cli("terms", "publish", document, "--version", "v2", *args), message)
    db.session.rollback()
    assert [d.version for d in legal.versions(LegalKind.TERMS)] == ["v1"]
    assert db.session.scalars(select(AuditEntry)).all() == []


def test_status_lists_versions_dates_and_counts(app, cli, document):
    assert "no terms of service published yet" in ok(cli("terms", "status"))
    publish_terms("v1")
    person = make_user()
    with atomic():
        legal.accept(db.session.get(User, person.id), legal.current(LegalKind.TERMS), None)
    date = in_days(10)
    ok(cli("terms", "publish", document, "--version", "v2", "--significant", "--effective", date))
    out = ok(cli("terms", "status"))
    assert "in force: version v1" in out
    assert f"scheduled: version v2 takes effect on {date}; notice mailed to 1 of 1" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    # the last column: the languages a version is published in
    assert lines["v2"][-5:] == [date, "yes", "0", "0", "en"]
    assert lines["v1"][-6:] == ["at", "publication", "no", "1", "0", "en"]


def test_refund_policy_publish_with_a_date_asks_no_consent(app, cli, document):
    publish_terms("r1", kind=LegalKind.REFUND_POLICY)
    make_user()
    date = in_days(14)
    out = ok(cli("refund-policy", "publish", document, "--version", "r2", "--significant", "--effective", date))
    assert f"published refunds version r2 (in force from {date})" in out and "must accept" not in out
    assert "mailed the advance notice to 1 person" in out
    status = ok(cli("refund-policy", "status"))
    assert "scheduled: version r2" in status and "-        -" in status
    ok(cli("privacy", "publish", document, "--version", "p1"))
    assert "in force: version p1" in ok(cli("privacy", "status"))
