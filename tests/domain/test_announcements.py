"""Announcements: who "all" and "active" are, the recipients fixed when it is sent, and the worker's step:
leased to one process at a time, each mail claimed before it goes, resumed after a stop with each
person mailed exactly once. The worker's step is called directly: no sleeps, no timing."""
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from portal import announcements, apikeys, catalog, users
from portal.audit import Actor
from portal.database import atomic
from portal.errors import InvalidInput
from portal.extensions import db
from portal.models import Account, Announcement, AnnouncementRecipient, AuditEntry, UsageRecord, User, utcnow
from tests.factories import make_model, make_user
from tests.web.helpers import outbox

ADMIN = Actor(label="admin@example.com", user_id=None, ip="192.0.2.1")


def topped_up(email, days_ago):
    user = make_user(email)
    with atomic():
        db.session.execute(update(Account).where(Account.id == user.account.id)
                           .values(last_topup_at=utcnow() - timedelta(days=days_ago)))
    return user


def called(email, days_ago):
    user = make_user(email)
    model = make_model()
    with atomic():
        key, _ = apikeys.issue(db.session.get(User, user.id), "k")
        db.session.add(UsageRecord(request_id=f"req_{uuid.uuid4().hex[:24]}", account_id=user.account.id,
                                   api_key_id=key.id, model_id=model.id, upstream_id=model.upstream_id,
                                   price_id=catalog.current_price(model.id).id, status="ok",
                                   started_at=utcnow() - timedelta(days=days_ago)))
    return user


def people(n, prefix="p"):
    return [make_user(f"{prefix}{i}@example.com") for i in range(n)]


def announce(audience="all", subject="Maintenance tonight", body="We upgrade at 22:00 UTC.\nBack by 23:00."):
    with atomic():
        return announcements.create(subject, body, audience, ADMIN).id


def recipients_mailed(app) -> Counter:
    return Counter(m["To"] for m in outbox(app) if m["Subject"] == "Maintenance tonight")


def test_the_audiences(app):
    called("caller@example.com", days_ago=10)
    topped_up("payer@example.com", days_ago=89)
    topped_up("old@example.com", days_ago=91)
    called("oldcaller@example.com", days_ago=120)
    make_user("unverified@example.com", verified=False)
    suspended = topped_up("suspended@example.com", days_ago=1)
    closed = topped_up("closed@example.com", days_ago=1)
    with atomic():
        users.suspend(db.session.get(User, suspended.id), "spam")
        users.terminate(db.session.get(User, closed.id), "asked")
    emails = lambda audience: set(db.session.scalars(select(User.email).where(  # noqa: E731
        User.id.in_(announcements.recipients(audience)))))
    assert emails("active") == {"caller@example.com", "payer@example.com"}
    assert emails("all") == {"caller@example.com", "payer@example.com", "old@example.com", "oldcaller@example.com",
                             "suspended@example.com"}
    assert (announcements.count("active"), announcements.count("all")) == (2, 5)


@pytest.mark.one_backend
@pytest.mark.parametrize("subject, body, audience, field", [
    ("", "body", "all", "subject"),
    (" \r\n ", "body", "all", "subject"),
    ("x" * 201, "body", "all", "subject"),
    ("Hi", "  ", "all", "body"),
    ("Hi", "x" * 20_001, "all", "body"),
    ("Hi", "body", "everyone", "audience"),
    ("Hi", "body", "active", "audience"),  # nobody is active
])
def test_bad_announcements_are_refused_and_nothing_is_stored(app, subject, body, audience, field):
    people(1)
    with pytest.raises(InvalidInput) as refused, atomic():
        announcements.create(subject, body, audience, ADMIN)
    assert refused.value.field == field
    db.session.rollback()
    assert db.session.scalars(select(Announcement)).all() == []
    assert db.session.scalars(select(AuditEntry)).all() == []


def test_sending_fixes_the_recipients_and_is_audited(app):
    people(3)
    announcement_id = announce()
    make_user("late@example.com")  # joined after: not a recipient
    db.session.rollback()
    row = db.session.get(Announcement, announcement_id)
    assert row.recipients == 3 and row.finished_at is None and row.subject == "Maintenance tonight"
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "announcement.send"))
    assert entry.actor == "admin@example.com" and entry.target_id == str(announcement_id)
    assert entry.after == {"subject": "Maintenance tonight", "audience": "all", "recipients": 3}
    assert outbox(app) == []  # nothing is mailed in the request


def test_a_run_stopped_midway_then_resumed_mails_each_recipient_exactly_once(app):
    people(5)
    announce()
    now = utcnow()
    assert announcements.step("worker-a", limit=2, now=now) == 2  # then worker-a's process stops
    assert sum(recipients_mailed(app).values()) == 2
    # Another process (or the same after a restart, under a new id) waits for the lease to run out...
    assert announcements.step("worker-b", limit=10, now=now + timedelta(seconds=30)) == 0
    # ...then goes on where worker-a stopped.
    later = now + announcements.LEASE + timedelta(seconds=1)
    assert announcements.step("worker-b", limit=10, now=later) == 3
    assert announcements.step("worker-b", limit=10, now=later) == 0
    assert announcements.step("worker-a", limit=10, now=later + timedelta(hours=1)) == 0
    assert recipients_mailed(app) == Counter({f"p{i}@example.com": 1 for i in range(5)})
    db.session.rollback()
    row = db.session.scalar(select(Announcement))
    assert row.finished_at is not None and row.worker is None
    progress = announcements.progress(row)
    assert (progress.sent, progress.skipped, progress.left) == (5, 0, 0)
    mail = outbox(app)[0]
    assert "We upgrade at 22:00 UTC.\nBack by 23:00." in mail.get_content()


def test_the_step_sends_at_most_its_limit_and_announcements_go_in_order(app):
    people(3)
    first = announce(subject="Maintenance tonight")
    second = announce(subject="New models")
    assert [announcements.step("w", limit=1) for _ in range(3)] == [1, 1, 1]
    assert [m["Subject"] for m in outbox(app)] == ["Maintenance tonight"] * 3
    assert announcements.step("w", limit=2) == 2  # finishes the first, goes on with the second
    assert announcements.step("w", limit=10) == 1
    assert announcements.step("w", limit=10) == 0
    db.session.rollback()
    assert all(a.finished_at is not None for a in db.session.scalars(select(Announcement)))
    assert [m["Subject"] for m in outbox(app)] == ["Maintenance tonight"] * 3 + ["New models"] * 3
    assert {first, second} == {a.id for a in db.session.scalars(select(Announcement))}


def test_a_recipient_claimed_elsewhere_is_never_mailed_again(app):
    """A row another process claimed (or whose mail a crash lost after the claim) is not sent twice."""
    people(3)
    announcement_id = announce()
    with atomic():
        claimed = db.session.scalar(select(AnnouncementRecipient).where(
            AnnouncementRecipient.announcement_id == announcement_id).order_by(AnnouncementRecipient.id).limit(1))
        claimed.sent_at = utcnow()
    assert announcements.step("w", limit=10) == 2
    assert recipients_mailed(app) == Counter({"p1@example.com": 1, "p2@example.com": 1})


def test_someone_closed_since_is_skipped(app):
    people(2)
    announcement_id = announce()
    with atomic():
        users.terminate(db.session.scalar(select(User).where(User.email == "p0@example.com")), "asked")
    assert announcements.step("w", limit=10) == 1
    assert recipients_mailed(app) == Counter({"p1@example.com": 1})
    progress = announcements.progress(db.session.get(Announcement, announcement_id))
    assert (progress.sent, progress.skipped, progress.left) == (1, 1, 0)


def test_the_worker_thread_sends_in_the_background(app):
    people(3)
    app.config["ANNOUNCE_PER_MINUTE"] = 60_000  # a millisecond apart: the test waits on the outbox, not a clock
    stop = announcements.start_worker(app)
    try:
        announce()
        announcements.wake()
        deadline = time.monotonic() + 30
        while sum(recipients_mailed(app).values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert recipients_mailed(app) == Counter({f"p{i}@example.com": 1 for i in range(3)})
    finally:
        stop.set()
        announcements.wake()
        for thread in threading.enumerate():
            if thread.name == "tollgate-announce":
                thread.join(timeout=10)
    assert not any(t.name == "tollgate-announce" for t in threading.enumerate())


def test_two_senders_at_once_never_mail_anyone_twice(app):
    """Even two senders past the lease (one worker id used twice) only split the list: each row is claimed once."""
    people(12)
    announce()
    barrier = threading.Barrier(2)
    counts = []

    def send():
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                counts.append(announcements.step("same-id", limit=100))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(counts) == 12 and len(counts) == 2
    assert recipients_mailed(app) == Counter({f"p{i}@example.com": 1 for i in range(12)})
