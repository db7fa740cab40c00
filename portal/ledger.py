"""The only code that writes money.

Design:
- Every change of a balance is a LedgerEntry, inserted in the same transaction as the change
  to the account's cached `balance`; entries are never updated or deleted (database triggers
  refuse it), so an account's balance is always the sum of its entries.
- `held` caches the sum of the account's open holds; it moves in the same transaction as the
  hold's status.
- Every decrease is a single conditional UPDATE whose WHERE clause checks the available balance
  (`balance - held >= amount`) and whose rowcount decides. There is no read-then-write, so the
  rule holds across threads, processes and machines on SQLite (writers serialised by BEGIN
  IMMEDIATE) and Postgres (row lock, WHERE re-checked after the wait).
- The one sanctioned overdraft: settling a hold for more than it reserved (the input estimate
  was low) charges the exact cost; the balance may dip below zero and further holds fail.
- Two more sanctioned overdrafts, both forced from outside: money Stripe takes back (a refund
  made in Stripe's dashboard, a dispute) is clawed back whatever the balance (`claw_back`).
- Entries are hash-chained per account: each stores sha256 of its content and of the previous
  entry's hash (`chain_hash`), and the account keeps the newest hash (`chain_head`). Altering or
  removing any entry breaks every later hash, which `verify` recomputes.
- Credits expire `VALIDITY_MONTHS` calendar months after the last paid top-up (`expiry_after`).
  A hold is refused once that moment has passed, in the same conditional UPDATE that checks the
  balance, so no call starts on expired credit even before the expiry job has run.
- Functions here do not commit: callers wrap them in `database.atomic()` so that money rows
  and the records that explain them (usage, payments) land together or not at all.
"""
import calendar
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import bindparam, case, func, or_, select
from sqlalchemy.exc import IntegrityError

from . import database, prepared
from .errors import CreditsExpired, HoldNotOpen, InsufficientFunds, InvalidAmount, ReferenceConflict
from .extensions import db
from .models import Account, ApiKey, EntryKind, Hold, HoldStatus, LedgerEntry, utcnow

CREDIT_KINDS = {EntryKind.GRANT, EntryKind.TOPUP, EntryKind.REFUND, EntryKind.ADJUSTMENT}
DEBIT_KINDS = {EntryKind.CHARGE, EntryKind.EXPIRY, EntryKind.REFUND, EntryKind.ADJUSTMENT, EntryKind.DISPUTE}
CLAW_BACK_KINDS = {EntryKind.REFUND, EntryKind.DISPUTE}
VALIDITY_MONTHS = 12
GENESIS = ""  # the "previous hash" of an account's first entry


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months later; a day the month lacks becomes its last.

    So 31 March 2027 + 12 months is 31 March 2028, and 29 February 2028 + 12 months is
    28 February 2029 (not 1 March): credits never last longer than the months promised.
    """
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def expiry_after(topup_at: datetime) -> datetime:
    """When credits expire if `topup_at` is the last paid top-up."""
    return add_months(topup_at, VALIDITY_MONTHS)


def stamp(moment: datetime) -> str:
    """A moment as the chain hashes it: UTC, microseconds, 'Z'."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chain_hash(previous: str, account_id: int, kind: str, amount: int, balance_after: int,
               reference: Optional[str], memo: str, created_at: str) -> str:
    """sha256 of an entry's content and the previous entry's hash (docs/billing.md shows it in 10 lines)."""
    content = json.dumps([previous, account_id, kind, amount, balance_after, reference, memo, created_at],
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(content.encode("utf-8")).hexdigest()

# Statements are built once: on the proxy's hot path, building and caching a SQLAlchemy
# statement per call costs several times what SQLite takes to run it (see docs/performance.md).
_account, _hold, _entry = Account.__table__, Hold.__table__, LedgerEntry.__table__
_covers = _account.c.balance - _account.c.held >= bindparam("amount")
_unexpired = or_(_account.c.credits_expire_at.is_(None), _account.c.credits_expire_at > bindparam("now"))
_RESERVE = (_account.update().where(_account.c.id == bindparam("account_id"), _covers, _unexpired)
            .values(held=_account.c.held + bindparam("amount")))
_INSERT_HOLD = _hold.insert().values(account_id=bindparam("account_id"), amount=bindparam("amount"),
                                     memo=bindparam("memo"), api_key_id=bindparam("api_key_id"),
                                     call_details=bindparam("call_details", type_=_hold.c.call_details.type)
                                     ).returning(_hold.c.id)
_CLOSE_HOLD = (_hold.update().where(_hold.c.id == bindparam("hold_id"), _hold.c.status == HoldStatus.OPEN.value)
               .values(status=bindparam("status"), closed_at=bindparam("closed_at"))
               .returning(_hold.c.account_id, _hold.c.amount))
_UNHOLD = (_account.update().where(_account.c.id == bindparam("account_id"))
           .values(held=_account.c.held - bindparam("released")))
# Every UPDATE that changes a balance returns the chain head as it stood: the UPDATE holds the
# account's row (Postgres) or the database (SQLite) until commit, so no other entry of the
# account can slip in between reading the head and moving it.
_NEW_BALANCE = (_account.c.balance, _account.c.chain_head)
_SETTLE = (_account.update().where(_account.c.id == bindparam("account_id"))
           .values(balance=_account.c.balance - bindparam("cost"), held=_account.c.held - bindparam("released"))
           .returning(*_NEW_BALANCE, _account.c.held, _account.c.low_balance_threshold,
                      _account.c.low_balance_armed, _account.c.auto_topup_enabled,
                      _account.c.auto_topup_payment_method, _account.c.auto_topup_threshold))
_ADD = (_account.update().where(_account.c.id == bindparam("account_id"))
        .values(balance=_account.c.balance + bindparam("delta")).returning(*_NEW_BALANCE))
# A paid top-up also moves the expiry (never backwards) and re-arms the low-balance mail.
_ADD_TOPUP = (_account.update().where(_account.c.id == bindparam("account_id"))
              .values(balance=_account.c.balance + bindparam("delta"),
                      last_topup_at=case((or_(_account.c.last_topup_at.is_(None),
                                              _account.c.last_topup_at < bindparam("topup_at")),
                                          bindparam("topup_at")), else_=_account.c.last_topup_at),
                      credits_expire_at=case((or_(_account.c.credits_expire_at.is_(None),
                                                  _account.c.credits_expire_at < bindparam("expires_at")),
                                              bindparam("expires_at")), else_=_account.c.credits_expire_at),
                      low_balance_armed=True)
              .returning(*_NEW_BALANCE))
_TAKE = (_account.update().where(_account.c.id == bindparam("account_id"), _covers)
         .values(balance=_account.c.balance - bindparam("amount")).returning(*_NEW_BALANCE))
_FORCE_TAKE = (_account.update().where(_account.c.id == bindparam("account_id"))
               .values(balance=_account.c.balance - bindparam("amount")).returning(*_NEW_BALANCE))
# Compare-and-set: the balance read a moment before, only if it is still that, nothing is in
# flight, and the credits are past their date.
_EXPIRE = (_account.update().where(_account.c.id == bindparam("account_id"), _account.c.held == 0,
                                   _account.c.balance == bindparam("amount"), _account.c.balance > 0,
                                   _account.c.credits_expire_at <= bindparam("now"))
           .values(balance=0).returning(*_NEW_BALANCE))
_BALANCE = select(_account.c.balance).where(_account.c.id == bindparam("account_id"))
_INSERT_ENTRY = _entry.insert().values(
    account_id=bindparam("account_id"), kind=bindparam("kind"), amount=bindparam("entry_amount"),
    balance_after=bindparam("balance_after"), reference=bindparam("reference"), memo=bindparam("memo"),
    hold_id=bindparam("hold_id"), created_at=bindparam("created_at"),
    entry_hash=bindparam("entry_hash")).returning(_entry.c.id)
_MOVE_HEAD = (_account.update().where(_account.c.id == bindparam("account_id"))
              .values(chain_head=bindparam("head")))
# No condition needed: settle's UPDATE returned the armed flag while holding the account's row (or
# the database) until commit, so no other charge can have read it armed meanwhile.
_DISARM = _account.update().where(_account.c.id == bindparam("account_id")).values(low_balance_armed=False)
_AVAILABLE = select(_account.c.balance - _account.c.held, _account.c.credits_expire_at).where(
    _account.c.id == bindparam("account_id"))
_BY_REFERENCE = select(_entry).where(_entry.c.reference == bindparam("reference"))


@dataclass(frozen=True)
class Entry:
    """A ledger entry as written (the row itself never changes)."""

    id: int
    account_id: int
    kind: str
    amount: int
    balance_after: int
    reference: Optional[str]
    hold_id: Optional[int]
    low_balance: bool = False  # settle only: this charge crossed the low-balance threshold
    auto_topup_due: bool = False  # settle only: automatic top-up is on and the available balance is under its threshold


def _run(statement, **params):
    # On the transaction's own connection, so the statement joins the caller's transaction; straight
    # to the driver (portal/prepared.py): these run twice or more in every billed call.
    return prepared.run(database.connection(), statement, params)


def _positive(amount: int) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidAmount(f"amount must be a positive whole number of micro-USD, got {amount!r}")
    return amount


def _non_negative(amount: int, what: str) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise InvalidAmount(f"{what} must be a non-negative whole number of micro-USD, got {amount!r}")
    return amount


def _forget(account_id: int) -> None:
    """Drop a stale in-session ORM copy of the account after a Core UPDATE changed it."""
    cached = db.session.identity_map.get(db.session.identity_key(Account, account_id))
    if cached is not None:
        db.session.expire(cached)


def _available(account_id: int) -> Optional[int]:
    row = _run(_AVAILABLE, account_id=account_id).first()
    return None if row is None else row[0]


def _refusal(account_id: int, amount: int, now: datetime) -> InsufficientFunds:
    """Why a reservation of `amount` was refused: expired credits, or too little of them."""
    row = _run(_AVAILABLE, account_id=account_id).first()
    if row is None:
        return InsufficientFunds(amount, None)
    available, expires_at = row
    if expires_at is not None and expires_at <= now:
        return CreditsExpired(amount, available, expires_at)
    return InsufficientFunds(amount, available)


def _record(account_id: int, kind: EntryKind, amount: int, row, *, memo: str,
            reference: Optional[str] = None, hold_id: Optional[int] = None) -> Entry:
    """Insert the entry for a balance UPDATE whose RETURNING gave `row` (new balance, old chain head)."""
    balance_after, previous = row[0], row[1]
    created_at = utcnow()
    digest = chain_hash(previous, account_id, kind.value, amount, balance_after, reference, memo, stamp(created_at))
    entry_id = _run(_INSERT_ENTRY, account_id=account_id, kind=kind.value, entry_amount=amount,
                    balance_after=balance_after, reference=reference, memo=memo, hold_id=hold_id,
                    created_at=created_at, entry_hash=digest).first().id
    _run(_MOVE_HEAD, account_id=account_id, head=digest)
    _forget(account_id)
    return Entry(entry_id, account_id, kind.value, amount, balance_after, reference, hold_id)


def _existing(reference: str, account_id: int, kind: EntryKind, amount: int) -> Optional[Entry]:
    row = _run(_BY_REFERENCE, reference=reference).first()
    if row is None:
        return None
    if (row.account_id, row.kind, row.amount) != (account_id, kind.value, amount):
        raise ReferenceConflict(f"reference {reference!r} was already used for another entry")
    return Entry(row.id, row.account_id, row.kind, row.amount, row.balance_after, row.reference, row.hold_id)


def _idempotent(reference: Optional[str], account_id: int, kind: EntryKind, amount: int, write) -> Entry:
    """Run `write` once per reference: a repeat returns the first entry instead of moving money again."""
    if reference is None:
        return write()
    earlier = _existing(reference, account_id, kind, amount)
    if earlier is not None:
        return earlier
    try:
        with db.session.begin_nested():
            return write()
    except IntegrityError:
        # Another transaction recorded the same reference between our look and our insert.
        earlier = _existing(reference, account_id, kind, amount)
        if earlier is None:
            raise
        return earlier


def credit(account_id: int, amount: int, kind: EntryKind, *, memo: str,
           reference: Optional[str] = None, topup_at: Optional[datetime] = None) -> Entry:
    """Add money to an account (grant, top-up, refund reversal, adjustment).

    With `topup_at` the credit is a paid top-up (or counts as one): the last top-up moves to
    that moment and the expiry to `expiry_after` it, and the low-balance mail is re-armed.
    """
    _positive(amount)
    if kind not in CREDIT_KINDS:
        raise ValueError(f"{kind} is not a credit")

    def write():
        if topup_at is None:
            row = _run(_ADD, account_id=account_id, delta=amount).first()
        else:
            row = _run(_ADD_TOPUP, account_id=account_id, delta=amount, topup_at=topup_at,
                       expires_at=expiry_after(topup_at)).first()
        if row is None:
            raise InvalidAmount(f"no account {account_id}")
        return _record(account_id, kind, amount, row, memo=memo, reference=reference)

    return _idempotent(reference, account_id, kind, amount, write)


def debit(account_id: int, amount: int, kind: EntryKind, *, memo: str,
          reference: Optional[str] = None) -> Entry:
    """Take money out of the available balance (refund payout, adjustment), or raise InsufficientFunds."""
    _positive(amount)
    if kind not in DEBIT_KINDS:
        raise ValueError(f"{kind} is not a debit")

    def write():
        row = _run(_TAKE, account_id=account_id, amount=amount).first()
        if row is None:
            raise InsufficientFunds(amount, _available(account_id))
        return _record(account_id, kind, -amount, row, memo=memo, reference=reference)

    return _idempotent(reference, account_id, kind, -amount, write)


def claw_back(account_id: int, amount: int, kind: EntryKind, *, memo: str, reference: str) -> Entry:
    """Take back money that Stripe returned to the payer (refund, dispute), even into a negative balance.

    The money has already left: refusing the entry would only make the books wrong. A negative
    balance refuses every hold until a top-up covers it. `reference` (the Stripe object) is required,
    so a redelivered event never takes twice.
    """
    _positive(amount)
    if kind not in CLAW_BACK_KINDS:
        raise ValueError(f"{kind} cannot be clawed back")
    if not reference:
        raise ValueError("a claw-back needs the reference of what caused it")

    def write():
        row = _run(_FORCE_TAKE, account_id=account_id, amount=amount).first()
        if row is None:
            raise InvalidAmount(f"no account {account_id}")
        return _record(account_id, kind, -amount, row, memo=memo, reference=reference)

    return _idempotent(reference, account_id, kind, -amount, write)


def expire(account_id: int, now: datetime, *, reference: str, memo: str) -> Optional[Entry]:
    """Expire an account's whole balance when its credits are past their date; None when there is nothing to do.

    Only an account with no call in flight is expired (a hold's money may still settle); the job
    runs again and finds it later, and meanwhile no new hold starts on expired credit.
    """
    earlier = _run(_BY_REFERENCE, reference=reference).first()
    if earlier is not None:
        return None

    def write():
        balance = _run(_BALANCE, account_id=account_id).scalar()
        if not balance or balance <= 0:
            return None
        row = _run(_EXPIRE, account_id=account_id, amount=balance, now=now).first()
        if row is None:
            return None  # a call is in flight, the date moved, or the balance just changed: next run
        return _record(account_id, EntryKind.EXPIRY, -balance, row, memo=memo, reference=reference)

    try:
        with db.session.begin_nested():
            return write()
    except IntegrityError:
        if _run(_BY_REFERENCE, reference=reference).first() is None:
            raise
        return None


def hold(account_id: int, amount: int, *, memo: str = "", api_key_id: Optional[int] = None,
         call_details: Optional[dict] = None) -> int:
    """Reserve `amount` of the available balance for an in-flight call and return the hold's id.

    `call_details` says what the call was, for the record of a call that never settles (calls.py).

    Raises InsufficientFunds (CreditsExpired when the credits are past their date), changing
    nothing, when the available balance does not cover it.
    """
    _non_negative(amount, "hold amount")
    now = utcnow()
    if _run(_RESERVE, account_id=account_id, amount=amount, now=now).rowcount != 1:
        raise _refusal(account_id, amount, now)
    _forget(account_id)
    return _run(_INSERT_HOLD, account_id=account_id, amount=amount, memo=memo, api_key_id=api_key_id,
                call_details=call_details).scalar()


def _close(hold_id: int, status: HoldStatus) -> tuple[int, int]:
    """Move an open hold to `status` exactly once; returns (account_id, amount)."""
    row = _run(_CLOSE_HOLD, hold_id=hold_id, status=status.value, closed_at=utcnow()).first()
    if row is None:
        raise HoldNotOpen(f"hold {hold_id} is not open")
    cached = db.session.identity_map.get(db.session.identity_key(Hold, hold_id))
    if cached is not None:
        db.session.expire(cached)
    return row.account_id, row.amount


def settle(hold_id: int, cost: int, *, memo: str = "") -> Entry:
    """Turn a hold into a charge of exactly `cost` and release the rest of it.

    A cost above the hold is still charged in full (see the module docstring).
    """
    _non_negative(cost, "cost")
    account_id, reserved = _close(hold_id, HoldStatus.SETTLED)
    row = _run(_SETTLE, account_id=account_id, cost=cost, released=reserved).first()
    entry = _record(account_id, EntryKind.CHARGE, -cost, row, memo=memo, hold_id=hold_id)
    balance, _, held, threshold, armed, auto_on, card, auto_threshold = row
    # Both read from settle's own RETURNING: calls of accounts with nothing to do run no extra query.
    due = bool(auto_on and card and balance - held < auto_threshold)
    if armed and balance - held < threshold:
        # This charge took the available balance below the owner's threshold, first since the
        # last top-up: the caller mails them once the transaction commits.
        _run(_DISARM, account_id=account_id)
        return dataclasses.replace(entry, low_balance=True, auto_topup_due=due)
    return dataclasses.replace(entry, auto_topup_due=due) if due else entry


def release(hold_id: int) -> None:
    """Give a hold back whole: nothing is charged."""
    account_id, reserved = _close(hold_id, HoldStatus.RELEASED)
    _run(_UNHOLD, account_id=account_id, released=reserved)
    _forget(account_id)


def stale_holds(older_than: datetime) -> list[tuple[int, Optional[int], int]]:
    """Open holds placed before `older_than`: (hold id, api key id, amount)."""
    return [tuple(row) for row in db.session.execute(
        select(Hold.id, Hold.api_key_id, Hold.amount)
        .where(Hold.status == HoldStatus.OPEN.value, Hold.created_at < older_than).order_by(Hold.id))]


def verify() -> list[str]:
    """Recompute every cached balance and held amount from entries and holds; describe each mismatch."""
    problems = []
    entry_sums = (select(LedgerEntry.account_id, func.coalesce(func.sum(LedgerEntry.amount), 0).label("total"))
                  .group_by(LedgerEntry.account_id).subquery())
    hold_sums = (select(Hold.account_id, func.coalesce(func.sum(Hold.amount), 0).label("total"))
                 .where(Hold.status == HoldStatus.OPEN.value).group_by(Hold.account_id).subquery())
    rows = db.session.execute(
        select(Account.id, Account.balance, Account.held,
               func.coalesce(entry_sums.c.total, 0), func.coalesce(hold_sums.c.total, 0))
        .outerjoin(entry_sums, entry_sums.c.account_id == Account.id)
        .outerjoin(hold_sums, hold_sums.c.account_id == Account.id)
        .order_by(Account.id)
    )
    for account_id, balance, held, entries_total, holds_total in rows:
        if balance != entries_total:
            problems.append(f"account {account_id}: balance {balance} != sum of entries {entries_total}")
        if held != holds_total:
            problems.append(f"account {account_id}: held {held} != sum of open holds {holds_total}")

    # A key's spend counters are money too: its held amount is the sum of its open holds, and what
    # it has spent is the sum of the charges settled from its holds.
    key_holds = (select(Hold.api_key_id, func.coalesce(func.sum(Hold.amount), 0).label("total"))
                 .where(Hold.status == HoldStatus.OPEN.value, Hold.api_key_id.is_not(None))
                 .group_by(Hold.api_key_id).subquery())
    key_charges = (select(Hold.api_key_id, func.coalesce(-func.sum(LedgerEntry.amount), 0).label("total"))
                   .join(LedgerEntry, LedgerEntry.hold_id == Hold.id)
                   .where(Hold.api_key_id.is_not(None), LedgerEntry.kind == EntryKind.CHARGE.value)
                   .group_by(Hold.api_key_id).subquery())
    keys = db.session.execute(
        select(ApiKey.id, ApiKey.held, ApiKey.spent_total, func.coalesce(key_holds.c.total, 0),
               func.coalesce(key_charges.c.total, 0))
        .outerjoin(key_holds, key_holds.c.api_key_id == ApiKey.id)
        .outerjoin(key_charges, key_charges.c.api_key_id == ApiKey.id)
        .order_by(ApiKey.id)
    )
    for key_id, held, spent, holds_total, charges_total in keys:
        if held != holds_total:
            problems.append(f"api key {key_id}: held {held} != sum of its open holds {holds_total}")
        if spent != charges_total:
            problems.append(f"api key {key_id}: spent {spent} != sum of its charges {charges_total}")

    # Running balances and the hash chain, entry by entry in each account's order.
    running: dict[int, int] = {}
    heads: dict[int, str] = {}
    entries = db.session.execute(
        select(LedgerEntry.id, LedgerEntry.account_id, LedgerEntry.kind, LedgerEntry.amount,
               LedgerEntry.balance_after, LedgerEntry.reference, LedgerEntry.memo, LedgerEntry.created_at,
               LedgerEntry.entry_hash)
        .order_by(LedgerEntry.account_id, LedgerEntry.id).execution_options(yield_per=5000)
    )
    for entry_id, account_id, kind, amount, balance_after, reference, memo, created_at, entry_hash in entries:
        running[account_id] = running.get(account_id, 0) + amount
        if running[account_id] != balance_after:
            problems.append(f"entry {entry_id}: balance_after {balance_after} != running sum {running[account_id]}")
        expected = chain_hash(heads.get(account_id, GENESIS), account_id, kind, amount, balance_after, reference,
                              memo, stamp(created_at))
        if entry_hash != expected:
            problems.append(f"entry {entry_id}: hash does not match its content and the entry before it "
                            "(altered, inserted or a predecessor removed)")
        heads[account_id] = entry_hash  # the stored hash, so one bad entry is reported once
    for account_id, head in db.session.execute(select(Account.id, Account.chain_head).order_by(Account.id)):
        if head != heads.get(account_id, GENESIS):
            problems.append(f"account {account_id}: chain head does not match its newest entry "
                            "(the newest entries were removed or replaced)")
    return problems


def statement_entries(account_id: int) -> list[LedgerEntry]:
    """An account's entries, oldest first, as the statement and its chain show them."""
    return list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account_id)
                                   .order_by(LedgerEntry.id)))
