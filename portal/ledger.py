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
from datetime import datetime
from typing import Optional

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from .errors import HoldNotOpen, InsufficientFunds, InvalidAmount, ReferenceConflict
from .extensions import db
from .models import Account, EntryKind, Hold, HoldStatus, LedgerEntry, utcnow

CREDIT_KINDS = {EntryKind.GRANT, EntryKind.TOPUP, EntryKind.REFUND, EntryKind.ADJUSTMENT}
DEBIT_KINDS = {EntryKind.CHARGE, EntryKind.EXPIRY, EntryKind.REFUND, EntryKind.ADJUSTMENT}


def _positive(amount: int) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidAmount(f"amount must be a positive whole number of micro-USD, got {amount!r}")
    return amount


def _forget(account_id: int) -> None:
    """Drop a stale in-session copy of the account after a Core UPDATE changed it."""
    cached = db.session.identity_map.get(db.session.identity_key(Account, account_id))
    if cached is not None:
        db.session.expire(cached)


def _available(account_id: int) -> Optional[int]:
    return db.session.scalar(select(Account.balance - Account.held).where(Account.id == account_id))


def _existing(reference: str, account_id: int, kind: EntryKind, amount: int) -> Optional[LedgerEntry]:
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.reference == reference))
    if entry is None:
        return None
    if (entry.account_id, entry.kind, entry.amount) != (account_id, kind.value, amount):
        raise ReferenceConflict(f"reference {reference!r} was already used for another entry")
    return entry


def _write(account_id: int, kind: EntryKind, amount: int, change, *, memo: str,
           reference: Optional[str], hold_id: Optional[int] = None,
           condition=None) -> Optional[LedgerEntry]:
    """Apply `change` to the account (guarded by `condition`) and record the entry; None if the guard failed."""
    stmt = update(Account).where(Account.id == account_id).values(**change).returning(Account.balance)
    if condition is not None:
        stmt = stmt.where(condition)
    balance = db.session.execute(stmt.execution_options(synchronize_session=False)).scalar()
    if balance is None:
        return None
    _forget(account_id)
    entry = LedgerEntry(account_id=account_id, kind=kind.value, amount=amount, balance_after=balance,
                        memo=memo, reference=reference, hold_id=hold_id)
    db.session.add(entry)
    db.session.flush()
    return entry


def _idempotent(reference: Optional[str], account_id: int, kind: EntryKind, amount: int, write):
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
           reference: Optional[str] = None, topup_at: Optional[datetime] = None) -> LedgerEntry:
    """Add money to an account (grant, top-up, refund reversal, adjustment)."""
    _positive(amount)
    if kind not in CREDIT_KINDS:
        raise ValueError(f"{kind} is not a credit")
    change = {"balance": Account.balance + amount}
    if topup_at is not None:
        change["last_topup_at"] = topup_at
    return _idempotent(reference, account_id, kind, amount,
                       lambda: _write(account_id, kind, amount, change, memo=memo, reference=reference))


def debit(account_id: int, amount: int, kind: EntryKind, *, memo: str,
          reference: Optional[str] = None) -> LedgerEntry:
    """Take money out of the available balance (expiry, refund payout, adjustment), or raise InsufficientFunds."""
    _positive(amount)
    if kind not in DEBIT_KINDS:
        raise ValueError(f"{kind} is not a debit")

    def write():
        entry = _write(account_id, kind, -amount, {"balance": Account.balance - amount}, memo=memo,
                       reference=reference, condition=Account.balance - Account.held >= amount)
        if entry is None:
            raise InsufficientFunds(amount, _available(account_id))
        return entry

    return _idempotent(reference, account_id, kind, -amount, write)


def hold(account_id: int, amount: int, *, memo: str = "") -> Hold:
    """Reserve `amount` of the available balance for an in-flight call, or raise InsufficientFunds."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise InvalidAmount(f"hold amount must be a non-negative whole number, got {amount!r}")
    reserved = db.session.execute(
        update(Account)
        .where(Account.id == account_id, Account.balance - Account.held >= amount)
        .values(held=Account.held + amount)
        .execution_options(synchronize_session=False)
    ).rowcount
    if reserved != 1:
        raise InsufficientFunds(amount, _available(account_id))
    _forget(account_id)
    placed = Hold(account_id=account_id, amount=amount, memo=memo)
    db.session.add(placed)
    db.session.flush()
    return placed


def _close(hold_id: int, status: HoldStatus) -> tuple[int, int]:
    """Move an open hold to `status` exactly once; returns (account_id, amount)."""
    row = db.session.execute(
        update(Hold)
        .where(Hold.id == hold_id, Hold.status == HoldStatus.OPEN.value)
        .values(status=status.value, closed_at=utcnow())
        .returning(Hold.account_id, Hold.amount)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        raise HoldNotOpen(f"hold {hold_id} is not open")
    cached = db.session.identity_map.get(db.session.identity_key(Hold, hold_id))
    if cached is not None:
        db.session.expire(cached)
    return row.account_id, row.amount


def settle(hold_id: int, cost: int, *, memo: str = "") -> LedgerEntry:
    """Turn a hold into a charge of exactly `cost` and release the rest of it.

    A cost above the hold is still charged in full (see the module docstring).
    """
    if not isinstance(cost, int) or isinstance(cost, bool) or cost < 0:
        raise InvalidAmount(f"cost must be a non-negative whole number, got {cost!r}")
    account_id, reserved = _close(hold_id, HoldStatus.SETTLED)
    change = {"balance": Account.balance - cost, "held": Account.held - reserved}
    return _write(account_id, EntryKind.CHARGE, -cost, change, memo=memo, reference=None, hold_id=hold_id)


def release(hold_id: int) -> None:
    """Give a hold back whole: nothing is charged."""
    account_id, reserved = _close(hold_id, HoldStatus.RELEASED)
    db.session.execute(
        update(Account).where(Account.id == account_id).values(held=Account.held - reserved)
        .execution_options(synchronize_session=False)
    )
    _forget(account_id)


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
