"""Mail that must go out once: expiry warnings (a unique Notice key) and the low-balance alert.

Two ways to make "once" hold across processes:
- A Notice row whose unique `key` names the event (`expiry-warning-30:{account}:{date}`): the
  first transaction to insert it sends the mail, every other one finds it taken.
- The low-balance alert needs no row: `ledger.settle` disarms the account in the charge's own
  transaction and says so exactly once; a top-up re-arms it.

Mail is sent after the transaction that decided it commits, so a rollback never leaves a mail
about something that did not happen (a crash between the two loses the mail instead: at most once).
The proxy hands its low-balance mail to a background sender so that no call waits for SMTP.
"""
import logging
import queue
import threading
from typing import Callable

from flask import Flask, render_template
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import i18n, links, mail
from .errors import InvalidAmount
from .extensions import db
from .models import Account, Notice, User, UserStatus
from .money import format_usd

log = logging.getLogger(__name__)

MAX_LOW_BALANCE_THRESHOLD = 1_000_000_000_000  # $1,000,000
_account = Account.__table__


def once(key: str, account_id: int | None = None) -> bool:
    """Record the notice `key`; False when it was recorded before (by this or another process)."""
    if db.session.scalar(select(Notice.id).where(Notice.key == key)) is not None:
        return False
    try:
        with db.session.begin_nested():
            db.session.add(Notice(key=key, account_id=account_id))
    except IntegrityError:
        return False  # another process inserted it between our look and our insert
    return True


def recipient(account_id: int) -> str | None:
    """The address to mail an account's owner at, or None for a closed account (its address is gone)."""
    row = db.session.execute(select(User.email, User.status).join(Account, Account.user_id == User.id)
                             .where(Account.id == account_id)).first()
    if row is None or row.status == UserStatus.TERMINATED.value:
        return None
    return row.email


def locale(account_id: int) -> str | None:
    """The language the account's owner chose (None: not chosen), for mail to them (mail.localized)."""
    return db.session.scalar(select(User.locale).join(Account, Account.user_id == User.id)
                             .where(Account.id == account_id))


def set_low_balance_threshold(account: Account, amount_micro: int) -> None:
    """Set the balance below which the owner is mailed once; 0 turns the alert off.

    The alert is armed only if the available balance is at or above the new threshold now: a
    threshold set above the balance does not mail at once (the person is looking at their balance
    as they set it); the next top-up arms it. Decided in one UPDATE, so a charge landing at the
    same moment cannot be missed or counted twice.
    """
    if not isinstance(amount_micro, int) or isinstance(amount_micro, bool) \
            or not 0 <= amount_micro <= MAX_LOW_BALANCE_THRESHOLD:
        raise InvalidAmount(f"The low-balance alert must be between $0.00 and "
                            f"{format_usd(MAX_LOW_BALANCE_THRESHOLD)}.", field="low_balance_threshold")
    db.session.execute(_account.update().where(_account.c.id == account.id).values(
        low_balance_threshold=amount_micro,
        low_balance_armed=_account.c.balance - _account.c.held >= amount_micro))
    db.session.expire(account)


def send_low_balance(account_id: int) -> bool:
    """Mail the owner that their available balance fell below their threshold; False if not sent.

    Called after the charge that crossed it committed. A threshold of 0 means "never mail": a call
    that overdraws below zero still crosses it as far as the ledger knows.
    """
    account = db.session.get(Account, account_id)
    to = recipient(account_id) if account is not None else None
    if to is None or account.low_balance_threshold <= 0:
        return False
    with mail.localized(locale(account_id)):
        mail.send(to, _("Your balance is below %(amount)s", amount=i18n.usd(account.low_balance_threshold)),
                  render_template("mail/low_balance.txt", available=account.available,
                                  threshold=account.low_balance_threshold, billing=links.public_url("billing.index")))
    return True


# -- the background sender --------------------------------------------------------------------

class _Sender:
    """One daemon thread running queued jobs in the app's context, one at a time, in order."""

    def __init__(self):
        self.jobs: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, app: Flask, job: Callable[[], object]) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._work, name="tollgate-mail", daemon=True)
                self.thread.start()
        self.jobs.put((app, job))

    def _work(self) -> None:
        while True:
            app, job = self.jobs.get()
            try:
                with app.app_context():
                    try:
                        job()
                    finally:
                        db.session.remove()
            except Exception:
                log.exception("a background mail job failed")
            finally:
                self.jobs.task_done()


_sender = _Sender()


def later(app: Flask, job: Callable[[], object]) -> None:
    """Run `job` (no arguments) soon in `app`'s context on the background sender; return at once."""
    _sender.submit(app, job)


def drain() -> None:
    """Wait until every job handed to `later` so far has run (tests; a clean shutdown)."""
    _sender.jobs.join()
