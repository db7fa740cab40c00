"""Privacy jobs: forget client addresses after IP_RETENTION_DAYS, and closed accounts' personal
data after CLOSED_ACCOUNT_RETENTION_DAYS.

Both run in the periodic job (expiry.run_due, every JOBS_INTERVAL_SECONDS) and take `now`, so
tests and reruns are exact.

- **Client addresses.** Usage records, API keys' last-used address, contact messages and
  consent (and decline) records keep the client's IP address for IP_RETENTION_DAYS (default 90), for abuse
  and fraud investigations; then it is set to NULL. The erasure goes in bounded batches
  (`BATCH` rows a transaction, at most `MAX_BATCHES` a run per table), so a first run on a big
  database neither holds the write lock long nor runs for ever: the next run continues.
- **Closed accounts.** An account is closed when its status is `terminated`, by the person's
  own close or by the operator. Closing already frees the address (the user row gets
  `closed-<id>@invalid`), ends sessions and revokes keys. CLOSED_ACCOUNT_RETENTION_DAYS later
  (default 180: long enough to pay back a refund by hand and to answer a card dispute, which
  banks accept for about 120 days after a charge) the rest goes: the email addresses in refund
  requests and contact messages, message bodies and the operator's replies, the reasons given
  for declining new terms, receipt and invoice links, the saved card and
  Stripe customer, key names and allow-lists, TOTP, recovery codes, pending email changes and
  every client address. The account row and its ledger stay (the ledger is append-only and the
  books must still add up), anonymised: nothing left in them names the person. An account
  whose refund request is still open waits until it is decided: that request holds the only way
  to reach the person. Each erasure writes an audit entry (who: `job:retention`) that counts
  what was cleared, and nothing personal.

What this job cannot change: the audit log is append-only (database triggers), so the entries
of operator actions keep what they recorded; and mail already sent is outside the database.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import delete, select, update

from . import audit
from .database import atomic
from .extensions import db
from .models import (Account, ApiKey, ContactMessage, ContactReply, EmailToken, KeyAddress, KnownAddress, LegalDecline,
                     Payment, RecoveryCode,
                     RefundRequest, RefundStatus, TermsAcceptance, UsageRecord, User, UserSession, UserStatus, utcnow)

log = logging.getLogger(__name__)

BATCH = 1_000
MAX_BATCHES = 100  # per table and run: 100,000 rows; an hourly job catches up with any backlog
ACTOR = audit.Actor(label="job:retention")
ERASED = "(erased)"

# (table, address column, time column): client addresses kept for IP_RETENTION_DAYS.
_ADDRESSES = (
    (UsageRecord.__table__, "client_ip", "started_at"),
    (ApiKey.__table__, "last_used_ip", "last_used_at"),
    (ContactMessage.__table__, "ip", "created_at"),
    (TermsAcceptance.__table__, "ip", "accepted_at"),
    (LegalDecline.__table__, "ip", "declined_at"),
    # The networks people signed in from (security_notices.py): the row stays, saying "signed in before".
    (KnownAddress.__table__, "network", "last_seen_at"),
)


@dataclass
class Report:
    """What one run did."""

    addresses: dict[str, int] = field(default_factory=dict)  # table -> addresses erased
    accounts: list[int] = field(default_factory=list)        # users whose personal data was erased
    waiting: list[int] = field(default_factory=list)         # closed long enough, but a refund is open

    def summary(self) -> str:
        erased = ", ".join(f"{n} in {table}" for table, n in self.addresses.items() if n) or "none"
        return (f"client addresses erased: {erased}; closed accounts erased: {len(self.accounts)}"
                + (f" ({len(self.waiting)} waiting for an open refund request)" if self.waiting else ""))


def erase_old_addresses(now: datetime, days: int, *, batch: int = BATCH,
                        max_batches: int = MAX_BATCHES) -> dict[str, int]:
    """Set client addresses recorded before `now - days` to NULL, batch by batch; the count per table."""
    cutoff = now - timedelta(days=days)
    erased = {}
    for table, address, moment in _ADDRESSES:
        kept = (table.c[address].is_not(None),
                # A key never used has no time; its address (if any) has nothing to keep it.
                (table.c[moment] < cutoff) | table.c[moment].is_(None))
        total = 0
        for _ in range(max_batches):
            ids = select(table.c.id).where(*kept).limit(batch).scalar_subquery()
            with atomic():
                done = db.session.execute(update(table).where(table.c.id.in_(ids)).values({address: None})
                                          .execution_options(synchronize_session=False)).rowcount
            total += done
            if done < batch:
                break
        erased[table.name] = total
    erased[KeyAddress.__tablename__] = _delete_old_key_addresses(cutoff, batch, max_batches)
    return erased


def _delete_old_key_addresses(cutoff: datetime, batch: int, max_batches: int) -> int:
    """Delete the addresses keys were used from (signals.py) on days before `cutoff`'s: the address is the row."""
    table, total = KeyAddress.__table__, 0
    for _ in range(max_batches):
        ids = select(table.c.id).where(table.c.day < cutoff.date()).limit(batch).scalar_subquery()
        with atomic():
            done = db.session.execute(delete(table).where(table.c.id.in_(ids))
                                      .execution_options(synchronize_session=False)).rowcount
        total += done
        if done < batch:
            break
    return total


def due_accounts(now: datetime, days: int) -> list[int]:
    """Closed users, not erased yet, closed at least `days` ago (oldest first)."""
    cutoff = now - timedelta(days=days)
    return list(db.session.scalars(select(User.id).where(
        User.status == UserStatus.TERMINATED.value, User.personal_data_erased_at.is_(None),
        (User.status_changed_at <= cutoff) | User.status_changed_at.is_(None)).order_by(User.id)))


def has_open_refund(user_id: int) -> bool:
    return db.session.scalar(select(RefundRequest.id).where(
        RefundRequest.user_id == user_id, RefundRequest.status == RefundStatus.REQUESTED.value).limit(1)) is not None


def erase_account(user_id: int, now: datetime, days: int) -> Optional[dict[str, int]]:
    """Erase one closed account's personal data in one transaction, with its audit entry.

    None when there is nothing to do: not closed, already erased, or a refund request still open.
    """
    with atomic():
        user = db.session.scalar(select(User).where(User.id == user_id).with_for_update())
        if (user is None or user.status != UserStatus.TERMINATED.value or user.personal_data_erased_at is not None
                or has_open_refund(user_id)):
            return None
        account_id = db.session.scalar(select(Account.id).where(Account.user_id == user_id))
        counts: dict[str, int] = {}

        def run(name: str, statement) -> None:
            counts[name] = db.session.execute(statement.execution_options(synchronize_session=False)).rowcount

        user.email = user.email_normalized = f"closed-{user.id}@invalid"
        user.password_hash = user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
        user.personal_data_erased_at = now
        run("recovery_codes", delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        run("email_links", delete(EmailToken).where(EmailToken.user_id == user_id))
        run("sessions", delete(UserSession).where(UserSession.user_id == user_id))
        run("known_addresses", delete(KnownAddress).where(KnownAddress.user_id == user_id))
        run("keys", update(ApiKey).where(ApiKey.user_id == user_id)
            .values(name="", last_used_ip=None, ip_allowlist=None))
        run("key_addresses", delete(KeyAddress).where(
            KeyAddress.api_key_id.in_(select(ApiKey.id).where(ApiKey.user_id == user_id))))
        run("refund_requests", update(RefundRequest).where(RefundRequest.user_id == user_id)
            .values(contact_email="", reason=""))
        run("contact_messages", update(ContactMessage).where(ContactMessage.user_id == user_id)
            .values(email="", subject=ERASED, message=ERASED, ip=None))
        run("replies", update(ContactReply).where(ContactReply.message_id.in_(
            select(ContactMessage.id).where(ContactMessage.user_id == user_id))).values(body=ERASED))
        run("consents", update(TermsAcceptance).where(TermsAcceptance.user_id == user_id).values(ip=None))
        run("declines", update(LegalDecline).where(LegalDecline.user_id == user_id).values(ip=None, reason=None))
        if account_id is not None:
            run("payments", update(Payment).where(Payment.account_id == account_id)
                .values(receipt_url=None, invoice_url=None))
            run("usage_records", update(UsageRecord).where(UsageRecord.account_id == account_id,
                                                           UsageRecord.client_ip.is_not(None)).values(client_ip=None))
            db.session.execute(update(Account).where(Account.id == account_id).values(
                stripe_customer_id=None, auto_topup_payment_method=None, auto_topup_card=None,
                auto_topup_enabled=False))
        closed = f"{user.status_changed_at:%Y-%m-%d}" if user.status_changed_at else "an unknown date"
        audit.record(ACTOR, "user.erase_personal_data", "user", user_id,
                     reason=f"closed on {closed}; personal data is kept {days} days after closing",
                     after={name: n for name, n in counts.items()})
    return counts


def erase_closed_accounts(now: datetime, days: int, report: Optional[Report] = None) -> Report:
    """Erase every closed account's personal data once its retention has passed."""
    report = report or Report()
    due = due_accounts(now, days)
    db.session.rollback()
    for user_id in due:
        try:
            if erase_account(user_id, now, days) is None:
                report.waiting.append(user_id)
            else:
                report.accounts.append(user_id)
        except Exception:  # one account's failure must not stop the others; the next run retries it
            log.exception("could not erase the personal data of closed user %s; the next run tries again", user_id)
    return report


def run(config, now: Optional[datetime] = None) -> Report:
    """Both privacy jobs, with the app's settings."""
    now = now or utcnow()
    report = Report()
    report.addresses = erase_old_addresses(now, config["IP_RETENTION_DAYS"])
    erase_closed_accounts(now, config["CLOSED_ACCOUNT_RETENTION_DAYS"], report)
    return report
