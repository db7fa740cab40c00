"""The expiry job: expire credit past its date, warn 30 and 7 days ahead; and the timer that runs it.

Credits expire `ledger.VALIDITY_MONTHS` calendar months after the last paid top-up (the ledger
moves the date with every top-up and refuses holds once it has passed, job or no job). This job
turns what is left into one `expiry` entry per account and top-up:

- Its reference is `expiry:{account}:{last top-up}`, so a rerun, or two processes at once,
  expire once. An account with a call in flight is skipped (its hold may still settle) and
  expired by a later run.
- Accounts that never topped up have no date and never expire; balances at or below zero are
  left alone (there is nothing to take).
- A warning goes out 30 days and again 7 days before the date, each once per date (a Notice
  row); a later top-up gives a new date and so new warnings. Within 7 days only the 7-day
  warning is sent, never both at once.

`flask --app wsgi credits expire` runs it by hand or from cron; `serve` also runs it every
JOBS_INTERVAL_SECONDS in a background thread, and `claim` makes sure one process across all
machines does so per interval. The same claimed run then does the other periodic jobs
(`other_jobs`: the privacy jobs in retention.py and the dashboards' rollups).
"""
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

from flask import Flask, render_template
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import i18n, ledger, links, mail, notices
from .database import atomic
from .extensions import db
from .models import Account, JobRun, utcnow
from .money import format_usd

log = logging.getLogger(__name__)

JOB = "expire"
WARNING_DAYS = (7, 30)  # smallest first: the nearest warning that applies is the one sent
_job_run = JobRun.__table__


@dataclass(frozen=True)
class Expired:
    account_id: int
    email: Optional[str]
    amount: int
    expired_at: datetime


@dataclass(frozen=True)
class Warned:
    account_id: int
    email: str
    days: int
    balance: int
    expires_at: datetime


@dataclass
class Report:
    """What one run did."""

    expired: list[Expired] = field(default_factory=list)
    warned: list[Warned] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)  # past their date, skipped: a call is running


def iso(moment: datetime) -> str:
    """A moment as references and notice keys name it: UTC ISO 8601 with microseconds."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def expiry_reference(account_id: int, last_topup_at: datetime) -> str:
    """The expiry entry's reference: one expiry per account and top-up."""
    return f"expiry:{account_id}:{iso(last_topup_at)}"


def warning_key(days: int, account_id: int, expires_at: datetime) -> str:
    """The Notice key of a warning: once per account, warning and expiry date."""
    return f"expiry-warning-{days}:{account_id}:{iso(expires_at)}"


def _due(now: datetime) -> list[int]:
    return list(db.session.scalars(select(Account.id).where(
        Account.credits_expire_at.is_not(None), Account.credits_expire_at <= now, Account.balance > 0)
        .order_by(Account.id)))


def _expire_one(account_id: int, now: datetime, report: Report) -> None:
    with atomic():
        account = db.session.get(Account, account_id)
        if account.last_topup_at is None or account.credits_expire_at is None:
            return  # the date is set only by a top-up; nothing here has one
        expired_at = account.credits_expire_at
        entry = ledger.expire(account_id, now, reference=expiry_reference(account_id, account.last_topup_at),
                              memo=f"credits expired on {expired_at:%Y-%m-%d}, "
                                   f"{ledger.VALIDITY_MONTHS} months after the last top-up")
        if entry is None:
            if account.held:
                report.in_flight.append(account_id)
            return
        email = notices.recipient(account_id)
    report.expired.append(Expired(account_id, email, -entry.amount, expired_at))


def _warn(now: datetime, report: Report) -> None:
    horizon = now + timedelta(days=max(WARNING_DAYS))
    rows = db.session.execute(select(Account.id, Account.balance, Account.credits_expire_at).where(
        Account.credits_expire_at > now, Account.credits_expire_at <= horizon, Account.balance > 0)
        .order_by(Account.id)).all()
    for account_id, balance, expires_at in rows:
        days = next(d for d in WARNING_DAYS if expires_at <= now + timedelta(days=d))
        with atomic():
            to = notices.recipient(account_id)
            if to is None or not notices.once(warning_key(days, account_id, expires_at), account_id):
                continue
        report.warned.append(Warned(account_id, to, days, balance, expires_at))


def _mail(report: Report) -> None:
    """Send the run's mail; every decision it reports is committed by now."""
    billing = links.public_url("billing.index")
    for item in report.warned:
        with mail.localized(notices.locale(item.account_id)):
            mail.send(item.email, _("Your credits expire on %(day)s", day=i18n.day(item.expires_at)),
                      render_template("mail/expiry_warning.txt", balance=item.balance, expires_at=item.expires_at,
                                      days=item.days, months=ledger.VALIDITY_MONTHS, billing=billing))
    for item in report.expired:
        if item.email:
            with mail.localized(notices.locale(item.account_id)):
                mail.send(item.email, _("Your credits expired on %(day)s", day=i18n.day(item.expired_at)),
                          render_template("mail/credits_expired.txt", amount=item.amount, expired_at=item.expired_at,
                                          months=ledger.VALIDITY_MONTHS, billing=billing))


def run(now: Optional[datetime] = None) -> Report:
    """Expire every account past its date, send the warnings that are due, mail the owners."""
    now = now or utcnow()
    report = Report()
    for account_id in _due(now):
        # One transaction per account: one failure does not undo, or hold up, the others.
        try:
            _expire_one(account_id, now, report)
        except Exception:
            log.exception("could not expire account %s; the next run tries again", account_id)
    _warn(now, report)
    db.session.rollback()  # end the read transaction before the (slow) mail
    _mail(report)
    return report


# -- running it on a timer -------------------------------------------------------------------

def claim(name: str, interval_seconds: int, now: Optional[datetime] = None) -> bool:
    """Take the job `name` for this interval; False if any process started it less than one ago.

    One conditional UPDATE (or the INSERT of the first row) decides, so across processes and
    machines only one claim per interval wins, on SQLite and Postgres alike. The margin lets a
    process whose timer fires a little early still take its own next turn. Call within atomic().
    """
    now = now or utcnow()
    margin = min(60.0, interval_seconds / 10)
    cutoff = now - timedelta(seconds=interval_seconds - margin)
    taken = db.session.execute(_job_run.update().where(_job_run.c.name == name, _job_run.c.started_at <= cutoff)
                               .values(started_at=now, finished_at=None)).rowcount
    if taken == 1:
        return True
    if db.session.scalar(select(JobRun.name).where(JobRun.name == name)) is not None:
        return False
    try:
        with db.session.begin_nested():
            db.session.execute(_job_run.insert().values(name=name, started_at=now))
    except IntegrityError:
        return False  # another process inserted the first row a moment ago
    return True


def run_due(app: Flask, now: Optional[datetime] = None) -> Optional[Report]:
    """Run the expiry job in `app` if this process wins this interval's claim; None otherwise."""
    interval = app.config["JOBS_INTERVAL_SECONDS"]
    if not interval:
        return None
    with app.app_context():
        try:
            with atomic():
                if not claim(JOB, interval, now):
                    return None
            report = run(now)
            other_jobs(app, now)
            with atomic():
                db.session.execute(_job_run.update().where(_job_run.c.name == JOB).values(finished_at=utcnow()))
            return report
        finally:
            db.session.remove()


def other_jobs(app: Flask, now: Optional[datetime] = None, echo=None) -> None:
    """The other periodic jobs, in the same claimed run: holds of calls whose process died (calls.py),
    privacy (retention.py), dashboard rollups, and the advance notice of new terms (legal.py) that a
    restart interrupted.

    Each is logged and its failure kept from the others; each resumes where it stopped next run.
    """
    from . import calls, dashboards, legal, retention

    stale_before = (now or utcnow()) - timedelta(seconds=app.config["STALE_HOLD_SECONDS"])
    for name, job in (("stale holds", lambda: f"{len(calls.release_stale(stale_before))} released"),
                      ("privacy", lambda: retention.run(app.config, now).summary()),
                      ("dashboard rollups", lambda: f"{len(dashboards.refresh_rollups(now))} day(s) rolled up"),
                      ("legal notices", lambda: f"{legal.resume_notices()} notice(s) of new terms mailed")):
        try:
            outcome = job()
            log.info("%s job: %s", name, outcome)
            if echo is not None:
                echo(f"{name}: {outcome}")
        except Exception:
            db.session.rollback()
            log.exception("the %s job failed; it runs again in the next interval", name)
            if echo is not None:
                echo(f"{name}: failed (see the log); it runs again next time")


def start_timer(app: Flask) -> Optional[threading.Event]:
    """Run `run_due` now and every JOBS_INTERVAL_SECONDS in a daemon thread; set the returned event to stop."""
    interval = app.config["JOBS_INTERVAL_SECONDS"]
    if not interval:
        return None
    stop = threading.Event()

    def loop():
        while True:
            try:
                report = run_due(app)
                if report is not None:
                    log.info("expiry job: %s", summary(report))
            except Exception:
                log.exception("the expiry job failed; it runs again in %s seconds", interval)
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="tollgate-expiry", daemon=True).start()
    return stop


def summary(report: Report) -> str:
    """One line saying what a run did."""
    total = sum(item.amount for item in report.expired)
    return (f"expired {format_usd(total)} in {len(report.expired)} account(s), sent {len(report.warned)} "
            f"warning(s), skipped {len(report.in_flight)} with calls in flight")
