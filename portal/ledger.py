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
- Functions here do not commit: callers wrap them in `database.atomic()` so that money rows
  and the records that explain them (usage, payments) land together or not at all.
"""
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from .errors import HoldNotOpen, InsufficientFunds, InvalidAmount, ReferenceConflict
from .extensions import db
from .models import Account, ApiKey, EntryKind, Hold, HoldStatus, LedgerEntry, utcnow

CREDIT_KINDS = {EntryKind.GRANT, EntryKind.TOPUP, EntryKind.REFUND, EntryKind.ADJUSTMENT}
DEBIT_KINDS = {EntryKind.CHARGE, EntryKind.EXPIRY, EntryKind.REFUND, EntryKind.ADJUSTMENT}

# Statements are built once: on the proxy's hot path, building and caching a SQLAlchemy
# statement per call costs several times what SQLite takes to run it (see docs/performance.md).
_account, _hold, _entry = Account.__table__, Hold.__table__, LedgerEntry.__table__
_covers = _account.c.balance - _account.c.held >= bindparam("amount")
_RESERVE = (_account.update().where(_account.c.id == bindparam("account_id"), _covers)
            .values(held=_account.c.held + bindparam("amount")))
_INSERT_HOLD = _hold.insert().values(account_id=bindparam("account_id"), amount=bindparam("amount"),
                                     memo=bindparam("memo"), api_key_id=bindparam("api_key_id")).returning(_hold.c.id)
_CLOSE_HOLD = (_hold.update().where(_hold.c.id == bindparam("hold_id"), _hold.c.status == HoldStatus.OPEN.value)
               .values(status=bindparam("status"), closed_at=bindparam("closed_at"))
               .returning(_hold.c.account_id, _hold.c.amount))
_UNHOLD = (_account.update().where(_account.c.id == bindparam("account_id"))
           .values(held=_account.c.held - bindparam("released")))
_SETTLE = (_account.update().where(_account.c.id == bindparam("account_id"))
           .values(balance=_account.c.balance - bindparam("cost"), held=_account.c.held - bindparam("released"))
           .returning(_account.c.balance))
_ADD = (_account.update().where(_account.c.id == bindparam("account_id"))
        .values(balance=_account.c.balance + bindparam("delta")).returning(_account.c.balance))
_ADD_TOPUP = (_account.update().where(_account.c.id == bindparam("account_id"))
              .values(balance=_account.c.balance + bindparam("delta"), last_topup_at=bindparam("topup_at"))
              .returning(_account.c.balance))
_TAKE = (_account.update().where(_account.c.id == bindparam("account_id"), _covers)
         .values(balance=_account.c.balance - bindparam("amount")).returning(_account.c.balance))
_INSERT_ENTRY = _entry.insert().values(
    account_id=bindparam("account_id"), kind=bindparam("kind"), amount=bindparam("entry_amount"),
    balance_after=bindparam("balance_after"), reference=bindparam("reference"), memo=bindparam("memo"),
    hold_id=bindparam("hold_id")).returning(_entry.c.id)
_AVAILABLE = select(_account.c.balance - _account.c.held).where(_account.c.id == bindparam("account_id"))
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


def _run(statement, **params):
    # The session's connection, so the statement joins the caller's transaction.
    return db.session.connection().execute(statement, params)


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
    return _run(_AVAILABLE, account_id=account_id).scalar()


def _record(account_id: int, kind: EntryKind, amount: int, balance_after: int, *, memo: str,
            reference: Optional[str] = None, hold_id: Optional[int] = None) -> Entry:
    entry_id = _run(_INSERT_ENTRY, account_id=account_id, kind=kind.value, entry_amount=amount,
                    balance_after=balance_after, reference=reference, memo=memo, hold_id=hold_id).first().id
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
    """Add money to an account (grant, top-up, refund reversal, adjustment)."""
    _positive(amount)
    if kind not in CREDIT_KINDS:
        raise ValueError(f"{kind} is not a credit")

    def write():
        if topup_at is None:
            balance = _run(_ADD, account_id=account_id, delta=amount).scalar()
        else:
            balance = _run(_ADD_TOPUP, account_id=account_id, delta=amount, topup_at=topup_at).scalar()
        if balance is None:
            raise InvalidAmount(f"no account {account_id}")
        return _record(account_id, kind, amount, balance, memo=memo, reference=reference)

    return _idempotent(reference, account_id, kind, amount, write)


def debit(account_id: int, amount: int, kind: EntryKind, *, memo: str,
          reference: Optional[str] = None) -> Entry:
    """Take money out of the available balance (expiry, refund payout, adjustment), or raise InsufficientFunds."""
    _positive(amount)
    if kind not in DEBIT_KINDS:
        raise ValueError(f"{kind} is not a debit")

    def write():
        balance = _run(_TAKE, account_id=account_id, amount=amount).scalar()
        if balance is None:
            raise InsufficientFunds(amount, _available(account_id))
        return _record(account_id, kind, -amount, balance, memo=memo, reference=reference)

    return _idempotent(reference, account_id, kind, -amount, write)


def hold(account_id: int, amount: int, *, memo: str = "", api_key_id: Optional[int] = None) -> int:
    """Reserve `amount` of the available balance for an in-flight call and return the hold's id.

    Raises InsufficientFunds, changing nothing, when the available balance does not cover it.
    """
    _non_negative(amount, "hold amount")
    if _run(_RESERVE, account_id=account_id, amount=amount).rowcount != 1:
        raise InsufficientFunds(amount, _available(account_id))
    _forget(account_id)
    return _run(_INSERT_HOLD, account_id=account_id, amount=amount, memo=memo, api_key_id=api_key_id).scalar()


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
    balance = _run(_SETTLE, account_id=account_id, cost=cost, released=reserved).scalar()
    return _record(account_id, EntryKind.CHARGE, -cost, balance, memo=memo, hold_id=hold_id)


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

    running: dict[int, int] = {}
    entries = db.session.execute(
        select(LedgerEntry.id, LedgerEntry.account_id, LedgerEntry.amount, LedgerEntry.balance_after)
        .order_by(LedgerEntry.account_id, LedgerEntry.id).execution_options(yield_per=5000)
    )
    for entry_id, account_id, amount, balance_after in entries:
        running[account_id] = running.get(account_id, 0) + amount
        if running[account_id] != balance_after:
            problems.append(f"entry {entry_id}: balance_after {balance_after} != running sum {running[account_id]}")
    return problems
