"""Legal versions with an effective date: what is in force when, who is asked to consent from when,
the advance notice mail (once per person, resumable), declines, and the audit of every publish."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from portal import legal
from portal.audit import Actor
from portal.database import atomic
from portal.errors import AlreadyExists, InvalidInput
from portal.extensions import db
from portal.models import AuditEntry, LegalDecline, LegalKind, Notice, User, UserStatus
from tests.factories import make_user
from tests.web.helpers import outbox

T, P, R = LegalKind.TERMS, LegalKind.PRIVACY, LegalKind.REFUND_POLICY


def now() -> datetime:
    return datetime.now(timezone.utc)


def publish(version, kind=T, **kwargs):
    with atomic():
        return legal.publish(kind, version, f"# {kind.value} {version}\n\nText.", **kwargs).id


def doc(document_id):
    db.session.rollback()
    return db.session.get(legal.LegalDocument, document_id)


def accept(user, kind=T):
    with atomic():
        legal.accept(db.session.get(User, user.id), legal.current(kind), "127.0.0.1")


@pytest.mark.one_backend
@pytest.mark.parametrize("text, expected", [
    ("", None), ("   ", None), (None, None),
    ("2026-12-15", datetime(2026, 12, 15, tzinfo=timezone.utc)),
    ("2026-12-15T09:30:00Z", datetime(2026, 12, 15, 9, 30, tzinfo=timezone.utc)),
    ("2026-12-15T09:30:00+01:00", datetime(2026, 12, 15, 8, 30, tzinfo=timezone.utc)),
])
def test_effective_dates_as_typed(text, expected):
    assert legal.parse_effective(text) == expected


@pytest.mark.one_backend
@pytest.mark.parametrize("text, says", [("2026-12-15T09:30:00", "has no timezone"), ("15/12/2026", "is not a date"),
                                        ("tomorrow", "is not a date"), ("2026-02-30", "is not a date")])
def test_effective_dates_that_are_refused(text, says):
    with pytest.raises(InvalidInput, match=says) as caught:
        legal.parse_effective(text)
    assert caught.value.field == "effective_at"


@pytest.mark.one_backend
def test_when_shows_the_time_only_when_it_is_not_midnight():
    assert legal.when(datetime(2026, 12, 15, tzinfo=timezone.utc)) == "2026-12-15"
    assert legal.when(datetime(2026, 12, 15, 9, 5, tzinfo=timezone.utc)) == "2026-12-15 09:05 UTC"


def test_a_scheduled_version_is_not_in_force_before_its_date(app):
    v1 = publish("v1")
    effective = now() + timedelta(days=30)
    v2 = publish("v2", significant=True, effective_at=effective)
    assert legal.current(T).id == v1
    assert legal.newest(T).id == v2
    assert [d.id for d in legal.upcoming(T)] == [v2] and legal.upcoming(P) == []
    assert doc(v2).is_upcoming and not doc(v1).is_upcoming
    assert legal.current(T, now=effective - timedelta(seconds=1)).id == v1
    assert legal.current(T, now=effective).id == v2
    assert [(a.kind, a.version, a.date) for a in legal.banner()] == [("terms", "v2", legal.when(effective))]


@pytest.mark.parametrize("kind", [T, P])
def test_consent_is_asked_from_the_effective_date_not_before(app, kind):
    publish("v1", kind=kind)
    user = make_user()
    if kind is T:
        accept(user)
    effective = now() + timedelta(days=10)
    publish("v2", kind=kind, significant=True, effective_at=effective)
    user = db.session.get(User, user.id)
    assert legal.needs_consent(user) is None
    assert legal.needs_consent(user, now=effective - timedelta(minutes=1)) is None
    due = legal.needs_consent(user, now=effective + timedelta(minutes=1))
    assert due is not None and due.version == "v2"
    with atomic():
        legal.accept(db.session.get(User, user.id), due, "127.0.0.1")
    assert legal.needs_consent(db.session.get(User, user.id), now=effective + timedelta(minutes=1)) is None


def test_someone_who_joins_during_the_notice_is_asked_on_the_date(app):
    publish("v1")
    effective = now() + timedelta(days=10)
    publish("v2", significant=True, effective_at=effective)
    user = make_user("late@example.com")
    accept(user)  # sign-up accepts the terms in force: v1
    user = db.session.get(User, user.id)
    assert legal.needs_consent(user) is None
    assert legal.needs_consent(user, now=effective + timedelta(seconds=1)).version == "v2"


def test_the_refund_policy_asks_no_consent_even_on_its_date(app):
    publish("t1")
    publish("r1", kind=R)
    user = make_user()
    accept(user)
    effective = now() + timedelta(days=3)
    publish("r2", kind=R, significant=True, effective_at=effective)
    assert legal.needs_consent(db.session.get(User, user.id), now=effective + timedelta(days=1)) is None
    assert legal.current(R, now=effective + timedelta(days=1)).version == "r2"


@pytest.mark.parametrize("kwargs, field, says", [
    ({"effective_at": "later"}, "effective_at", "Only a significant change can take effect later"),
    ({"significant": True, "effective_at": "past"}, "effective_at", "must be in the future"),
    ({"version": "a/b"}, "version", "cannot contain slashes"),
    ({"version": "x" * 41}, "version", "1-40 characters"),
    ({"body": " \n "}, "body", "the document is empty"),
])
def test_publishing_refuses_bad_input_and_writes_nothing(app, kwargs, field, says):
    kwargs = dict(kwargs)  # the parameter is shared by both backends' runs
    publish("v1")
    moments = {"later": now() + timedelta(days=5), "past": now() - timedelta(minutes=1)}
    if "effective_at" in kwargs:
        kwargs["effective_at"] = moments[kwargs["effective_at"]]
    version, body = kwargs.pop("version", "v2"), kwargs.pop("body", "# ok")
    with pytest.raises(InvalidInput, match=says) as caught, atomic():
        legal.publish(T, version, body, actor=Actor.cli(), **kwargs)
    assert caught.value.field == field
    assert [d.version for d in legal.versions(T)] == ["v1"]
    assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_the_first_version_cannot_wait_for_a_date(app):
    with pytest.raises(InvalidInput, match="in force yet"), atomic():
        legal.publish(P, "p1", "# Privacy", significant=True, effective_at=now() + timedelta(days=30))
    assert legal.versions(P) == []


def test_nothing_may_take_effect_before_a_scheduled_version(app):
    publish("v1")
    effective = now() + timedelta(days=30)
    publish("v2", significant=True, effective_at=effective)
    for kwargs in ({}, {"significant": True}, {"significant": True, "effective_at": effective - timedelta(days=1)}):
        with pytest.raises(InvalidInput, match="Version v2 takes effect on"), atomic():
            legal.publish(T, "v3", "# v3", **kwargs)
    # On or after its date it is allowed, and replaces it from then on.
    v3 = publish("v3", significant=True, effective_at=effective)
    assert legal.current(T, now=effective + timedelta(seconds=1)).id == v3
    with pytest.raises(AlreadyExists), atomic():
        legal.publish(T, "v3", "# again")
    # Other kinds are not held up by a scheduled version of the terms.
    publish("p1", kind=P)


def test_every_publish_is_audited_with_its_actor(app):
    admin = make_user("admin@example.com", admin=True)
    effective = now() + timedelta(days=30)
    publish("v1", actor=Actor.admin(admin, "203.0.113.9"), reason="first")
    publish("v2", significant=True, effective_at=effective, actor=Actor.cli())
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.actor, e.ip, e.reason) for e in entries] == [
        ("legal.publish", "admin@example.com", "203.0.113.9", "first"),
        ("legal.publish", Actor.cli().label, None, None)]
    assert entries[1].target_type == "legal_document" and entries[1].target_id == str(legal.find(T, "v2").id)
    assert entries[1].after["version"] == "v2" and entries[1].after["significant"] is True
    assert entries[1].after["effective_at"] == effective.isoformat()


def test_declining_is_recorded_once_per_person_and_version(app):
    v1 = publish("v1")
    user = make_user()
    for reason in ("too expensive", "still no"):
        with atomic():
            legal.decline(db.session.get(User, user.id), doc(v1), "127.0.0.1", reason)
    rows = db.session.scalars(select(LegalDecline)).all()
    assert [(r.user_id, r.document_id, r.reason) for r in rows] == [(user.id, v1, "too expensive")]
    row = legal.version_rows(T)[0]
    assert (row.accepted, row.declined) == (0, 1)
    listed = db.session.execute(legal.declines(doc(v1))).all()
    assert [(d.user_id, email, later) for d, email, later in listed] == [(user.id, "person@example.com", False)]
    with atomic():
        legal.accept(db.session.get(User, user.id), doc(v1), None)
    assert db.session.execute(legal.declines(doc(v1))).one()[2] is True
    assert legal.version_rows(T)[0].accepted == 1


def _mailed(app, subject_part="Our "):
    return sorted(m["To"] for m in outbox(app) if subject_part in m["Subject"])


def test_the_advance_notice_goes_to_active_verified_people_once(app):
    publish("v1")
    for email in ("a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"):
        make_user(email)
    make_user("unverified@example.com", verified=False)
    gone = make_user("suspended@example.com")
    with atomic():
        db.session.get(User, gone.id).status = UserStatus.SUSPENDED.value
    effective = now() + timedelta(days=30)
    v2 = publish("v2", significant=True, effective_at=effective)
    assert legal.send_notices(v2, batch_size=2) == 5  # several batches
    expected = ["a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"]
    assert _mailed(app) == expected
    message = [m for m in outbox(app) if m["To"] == "a@example.com"][0]
    assert message["Subject"] == f"Our terms of service change on {legal.when(effective)}"
    body = message.get_content()
    assert "http://localhost/terms/v2" in body and "we will ask you to accept" in body
    # A rerun (after a restart) mails nobody twice, but reaches people who joined since.
    assert legal.send_notices(v2) == 0
    make_user("new@example.com")
    assert legal.send_notices(v2) == 1
    assert _mailed(app) == sorted(expected + ["new@example.com"])
    assert legal.notices_sent(doc(v2)) == 6 and legal.notice_audience(doc(v2)) == 6
    assert legal.version_rows(T)[0].notified == 6


def test_a_notice_claimed_elsewhere_is_not_sent_again(app):
    publish("v1")
    user = make_user("a@example.com")
    make_user("b@example.com")
    v2 = publish("v2", significant=True, effective_at=now() + timedelta(days=30))
    with atomic():  # another process got to this person first
        db.session.add(Notice(key=f"legal-notice:{v2}:{user.id}", account_id=None))
    assert legal.send_notices(v2) == 1
    assert _mailed(app) == ["b@example.com"]


def test_no_notice_once_the_date_has_passed_or_without_a_date(app):
    past = now() - timedelta(days=40)
    with atomic():
        legal.publish(T, "v1", "# v1", now=past)
        late = legal.publish(T, "v2", "# v2", significant=True, effective_at=now() - timedelta(days=1), now=past).id
        plain = legal.publish(T, "v3", "# v3", significant=True).id
    make_user()
    assert legal.send_notices(late) == 0 and legal.send_notices(plain) == 0
    assert _mailed(app) == []
    with pytest.raises(InvalidInput, match="can no longer be given"), atomic():
        legal.request_notices(doc(late), Actor.cli())
    with pytest.raises(InvalidInput, match="no advance notice"), atomic():
        legal.request_notices(doc(plain), Actor.cli())


def test_the_refund_policy_notice_asks_for_nothing(app):
    publish("r1", kind=R)
    make_user()
    effective = now() + timedelta(days=30)
    r2 = publish("r2", kind=R, significant=True, effective_at=effective)
    assert legal.send_notices(r2) == 1
    message = outbox(app)[-1]
    assert message["Subject"] == f"Our refund policy changes on {legal.when(effective)}"
    assert "accept" not in message.get_content() and "http://localhost/legal/refunds/r2" in message.get_content()


def test_resume_finishes_every_scheduled_notice(app):
    publish("v1")
    publish("p1", kind=P)
    user = make_user("a@example.com")
    make_user("b@example.com")
    v2 = publish("v2", significant=True, effective_at=now() + timedelta(days=30))
    publish("p2", kind=P, significant=True, effective_at=now() + timedelta(days=40))
    with atomic():  # the background sender reached one person before a restart
        db.session.add(Notice(key=f"legal-notice:{v2}:{user.id}", account_id=None))
    assert legal.resume_notices() == 3
    assert legal.resume_notices() == 0
    assert sorted((m["To"], m["Subject"].split()[1]) for m in outbox(app)) == [
        ("a@example.com", "privacy"), ("b@example.com", "privacy"), ("b@example.com", "terms")]
