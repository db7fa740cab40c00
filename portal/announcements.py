"""Announcements: one plain-text mail to all users, or to the active ones, sent in the background.

Audiences (`recipients`):
- "all": every account with a verified address that is not closed (suspended ones included: they
  keep a balance and can still log in to read it);
- "active": status active, verified, and a call (a usage record) or a paid top-up
  (`Account.last_topup_at`) in the last ACTIVE_DAYS (90) days.

Sending the operator's "send" creates the announcement and one row per recipient, decided then,
in one transaction with its audit entry. Nothing is mailed in that transaction. A worker (the
thread `serve` starts, `start_worker`) calls `step` again and again:

- `step` leases the OLDEST unfinished announcement for its worker id (a conditional UPDATE:
  free, its own, or a lease that ran out). One process sends at a time, in order, so the
  throttle (ANNOUNCE_PER_MINUTE) holds across processes. A process that stops lets its lease run
  out (LEASE) and another process, or itself after a restart, goes on where it stopped.
- Each mail is claimed first: `sent_at` is set on the recipient row by a conditional UPDATE
  (`WHERE sent_at IS NULL`) and committed, then the mail is sent. Two processes can never both
  claim one row, so no one is mailed twice, whatever the leases do. A crash between the commit and
  the mail loses that one mail (at most once, as for every notice this app sends).
- A recipient closed since the announcement was made is skipped (their address is gone).
- When no recipient is left, the announcement is marked finished.
"""
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from flask import Flask, render_template
from sqlalchemy import exists, func, insert, literal, or_, select

from . import audit, mail
from .audit import Actor
from .database import atomic
from .errors import InvalidInput
from .extensions import db
from .inbox import one_line
from .models import (Account, Announcement, AnnouncementRecipient, Audience, UsageRecord, User, UserStatus,
                     utcnow)

log = logging.getLogger(__name__)

ACTIVE_DAYS = 90
LEASE = timedelta(minutes=5)
IDLE_SECONDS = 30  # how often an idle worker looks for announcements made by another process
MAX_SUBJECT = 200
MAX_BODY = 20_000
AUDIENCES = {Audience.ALL.value: "All users", Audience.ACTIVE.value: f"Active users (last {ACTIVE_DAYS} days)"}

_announcement = Announcement.__table__
_recipient = AnnouncementRecipient.__table__
_wake = threading.Event()  # set when this process creates one: its worker starts at once


def recipients(audience: str, now: Optional[datetime] = None):
    """A select of the user ids an audience names now."""
    if audience not in AUDIENCES:
        raise InvalidInput("Choose who gets it: all users or active users.", field="audience")
    query = select(User.id).where(User.is_verified.is_(True), User.status != UserStatus.TERMINATED.value)
    if audience == Audience.ACTIVE.value:
        since = (now or utcnow()) - timedelta(days=ACTIVE_DAYS)
        account = select(Account).where(Account.user_id == User.id)
        called = exists().where(UsageRecord.account_id == Account.id, UsageRecord.started_at >= since)
        query = query.where(User.status == UserStatus.ACTIVE.value,
                            account.where(or_(Account.last_topup_at >= since, called)).exists())
    return query


def count(audience: str, now: Optional[datetime] = None) -> int:
    """How many people the audience names now (the console's preview)."""
    return db.session.scalar(select(func.count()).select_from(recipients(audience, now).subquery()))


def create(subject: str, body: str, audience: str, actor: Actor, now: Optional[datetime] = None) -> Announcement:
    """Store an announcement and its recipients for the worker to send; audited. Call within atomic()."""
    subject, body = one_line(subject), (body or "").strip().replace("\r\n", "\n")
    if not subject:
        raise InvalidInput("Give the announcement a subject.", field="subject")
    if len(subject) > MAX_SUBJECT:
        raise InvalidInput(f"Keep the subject under {MAX_SUBJECT} characters.", field="subject")
    if not body:
        raise InvalidInput("Write the announcement.", field="body")
    if len(body) > MAX_BODY:
        raise InvalidInput(f"Keep the announcement under {MAX_BODY:,} characters.", field="body")
    now = now or utcnow()
    ids = recipients(audience, now)
    row = Announcement(subject=subject, body=body, audience=audience, created_by=actor.label[:254], created_at=now,
                       recipients=0)
    db.session.add(row)
    db.session.flush()
    db.session.execute(insert(AnnouncementRecipient).from_select(
        ["announcement_id", "user_id", "skipped"], select(literal(row.id), ids.subquery().c.id, literal(False))))
    added = db.session.scalar(select(func.count()).select_from(AnnouncementRecipient)
                              .where(AnnouncementRecipient.announcement_id == row.id))
    if not added:
        raise InvalidInput("No one is in that audience yet: there is nobody to send it to.", field="audience")
    row.recipients = added
    audit.record(actor, "announcement.send", "announcement", row.id,
                 after={"subject": subject, "audience": audience, "recipients": added})
    return row


def wake() -> None:
    """Start this process's worker now (call after the announcement is committed)."""
    _wake.set()


@dataclass(frozen=True)
class Progress:
    announcement: Announcement
    sent: int     # mailed (or claimed for mailing)
    skipped: int  # closed since it was made

    @property
    def left(self) -> int:
        return self.announcement.recipients - self.sent - self.skipped


def progress(announcement: Announcement) -> Progress:
    rows = dict(db.session.execute(select(AnnouncementRecipient.skipped, func.count())
                                   .where(AnnouncementRecipient.announcement_id == announcement.id,
                                          AnnouncementRecipient.sent_at.is_not(None))
                                   .group_by(AnnouncementRecipient.skipped)).all())
    return Progress(announcement, rows.get(False, 0), rows.get(True, 0))


def listing():
    """A query for announcements, newest first."""
    return select(Announcement).order_by(Announcement.id.desc())


# --- the worker -----------------------------------------------------------------------------------

def worker_id() -> str:
    """This process's name in leases: host, pid, and a random part (containers reuse pids)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _lease(worker: str, now: datetime) -> Optional[int]:
    """Lease the oldest unfinished announcement for `worker`; None when there is none or another holds it."""
    first = db.session.scalar(select(Announcement.id).where(Announcement.finished_at.is_(None))
                              .order_by(Announcement.id).limit(1))
    if first is None:
        return None
    taken = db.session.execute(_announcement.update().where(
        _announcement.c.id == first, _announcement.c.finished_at.is_(None),
        or_(_announcement.c.worker.is_(None), _announcement.c.worker == worker, _announcement.c.lease_until <= now))
        .values(worker=worker, lease_until=now + LEASE)).rowcount
    return first if taken == 1 else None


@dataclass(frozen=True)
class _Due:
    email: str
    subject: str
    body: str
    locale: Optional[str] = None  # the recipient's language, for the mail's own lines (the operator wrote the rest)


def _claim_next(announcement_id: int, now: datetime) -> Optional[_Due]:
    """Claim the next recipient (sent_at set now); None when none is left (the announcement is finished)."""
    while True:
        row = db.session.execute(select(AnnouncementRecipient.id, User.email, User.status, User.locale)
                                 .join(User, User.id == AnnouncementRecipient.user_id)
                                 .where(AnnouncementRecipient.announcement_id == announcement_id,
                                        AnnouncementRecipient.sent_at.is_(None))
                                 .order_by(AnnouncementRecipient.id).limit(1)).first()
        if row is None:
            db.session.execute(_announcement.update().where(_announcement.c.id == announcement_id,
                                                            _announcement.c.finished_at.is_(None))
                               .values(finished_at=now, worker=None, lease_until=None))
            return None
        closed = row.status == UserStatus.TERMINATED.value
        taken = db.session.execute(_recipient.update().where(_recipient.c.id == row.id, _recipient.c.sent_at.is_(None))
                                   .values(sent_at=now, skipped=closed)).rowcount
        if taken == 1 and not closed:
            announcement = db.session.get(Announcement, announcement_id)
            return _Due(row.email, announcement.subject, announcement.body, row.locale)
        # Taken by another process a moment ago, or closed since: on to the next one.


def step(worker: str, limit: int = 1, now: Optional[datetime] = None) -> int:
    """Mail up to `limit` recipients of the oldest unfinished announcement(s) `worker` can lease; how many it sent."""
    now = now or utcnow()
    sent = 0
    while sent < limit:
        with atomic():
            announcement_id = _lease(worker, now)
        if announcement_id is None:
            break  # nothing to send, or another process is sending it
        while sent < limit:
            with atomic():
                due = _claim_next(announcement_id, now)
            if due is None:
                break  # finished: on to the next announcement, if any
            # After the claim's commit: a rollback can never leave a mail about nothing.
            with mail.localized(due.locale or "en"):
                mail.send(due.email, due.subject, render_template("mail/announcement.txt", body=due.body))
            sent += 1
    return sent


def start_worker(app: Flask) -> Optional[threading.Event]:
    """Send announcements in a daemon thread, ANNOUNCE_PER_MINUTE at most; set the returned event to stop."""
    per_minute = app.config["ANNOUNCE_PER_MINUTE"]
    if not per_minute:
        return None
    pause, me, stop = 60 / per_minute, worker_id(), threading.Event()

    def loop():
        while not stop.is_set():
            sent = 0
            try:
                with app.app_context():
                    try:
                        sent = step(me, 1)
                    finally:
                        db.session.remove()
            except Exception:
                log.exception("the announcement worker failed; it tries again shortly")
            if sent:
                stop.wait(pause)
            else:
                _wake.wait(IDLE_SECONDS)
                _wake.clear()

    threading.Thread(target=loop, name="tollgate-announce", daemon=True).start()
    return stop
