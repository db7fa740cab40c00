"""The ledger's own refusals and checks: amounts it will not take, references it will not reuse,
holds it closes the right way, and `verify` finding each kind of damage."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, insert, select, update

from portal import ledger
from portal.database import atomic
from portal.errors import InsufficientFunds, InvalidAmount, ReferenceConflict
from portal.extensions import db
from portal.models import Account, EntryKind, Hold, HoldStatus, LedgerEntry, utcnow
from tests.factories import make_user

NOT_MONEY = [-1, 1.0, 0.5, True, False, "10", None]


def account(user) -> Account:
    db.session.rollback()  # end the read snapshot; see the rows as committed now
    return db.session.get(Account, user.account.id)


def entries(user) -> list[tuple[str, int, int, str | None]]:
    rows = db.session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == user.account.id)
                              .order_by(LedgerEntry.id))
    return [(e.kind, e.amount, e.balance_after, e.reference) for e in rows]


def hold_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Hold))


def hold_status(hold_id: int) -> str:
    db.session.rollback()
    return db.session.get(Hold, hold_id).status


# --- amounts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("amount", NOT_MONEY)
def test_hold_refuses_a_negative_or_non_integer_amount_and_changes_nothing(app, amount):
    user = make_user(credit=1_000)
    with pytest.raises(InvalidAmount, match="hold amount"), atomic():
        ledger.hold(user.account.id, amount)
    acct = account(user)
    assert (acct.balance, acct.held, hold_count()) == (1_000, 0, 0)


def test_a_hold_of_zero_is_allowed_while_the_balance_is_not_negative(app):
    user = make_user()
    with atomic():
        placed = ledger.hold(user.account.id, 0)
    assert account(user).held == 0 and hold_status(placed) == HoldStatus.OPEN.value
    with atomic():
        ledger.release(placed)
    assert ledger.verify() == []


@pytest.mark.parametrize("cost", NOT_MONEY)
def test_settle_refuses_a_negative_or_non_integer_cost_and_changes_nothing(app, cost):
    user = make_user(credit=1_000)
    with atomic():
        placed = ledger.hold(user.account.id, 400)
    with pytest.raises(InvalidAmount, match="cost"), atomic():
        ledger.settle(placed, cost)
    acct = account(user)
    assert (acct.balance, acct.held) == (1_000, 400)
    assert hold_status(placed) == HoldStatus.OPEN.value
    assert entries(user) == [("grant", 1_000, 1_000, None)]
    with atomic():
        ledger.settle(placed, 400)  # still open: it can be settled properly afterwards
    assert account(user).balance == 600


def test_settle_at_zero_is_a_charge_of_zero(app):
    user = make_user(credit=1_000)
    with atomic():
        placed = ledger.hold(user.account.id, 400)
    with atomic():
        entry = ledger.settle(placed, 0)
    assert (entry.kind, entry.amount, entry.balance_after, entry.hold_id) == ("charge", 0, 1_000, placed)
    assert hold_status(placed) == HoldStatus.SETTLED.value
    acct = account(user)
    assert (acct.balance, acct.held) == (1_000, 0)


@pytest.mark.parametrize("operation", ["credit", "debit"])
@pytest.mark.parametrize("amount", [0, -1, 2.0, True, "5", None])
def test_credit_and_debit_refuse_anything_but_a_positive_integer(app, operation, amount):
    user = make_user(credit=1_000)
    kind = EntryKind.GRANT if operation == "credit" else EntryKind.EXPIRY
    with pytest.raises(InvalidAmount), atomic():
        getattr(ledger, operation)(user.account.id, amount, kind, memo="x")
    assert account(user).balance == 1_000 and len(entries(user)) == 1


@pytest.mark.parametrize("kind", [EntryKind.CHARGE, EntryKind.EXPIRY])
def test_credit_refuses_a_debit_kind(app, kind):
    user = make_user()
    with pytest.raises(ValueError, match="not a credit"), atomic():
        ledger.credit(user.account.id, 5, kind, memo="x")
    assert account(user).balance == 0


@pytest.mark.parametrize("kind", [EntryKind.GRANT, EntryKind.TOPUP])
def test_debit_refuses_a_credit_kind(app, kind):
    user = make_user(credit=1_000)
    with pytest.raises(ValueError, match="not a debit"), atomic():
        ledger.debit(user.account.id, 5, kind, memo="x")
    assert account(user).balance == 1_000


def test_credit_of_an_unknown_account_is_refused(app):
    with pytest.raises(InvalidAmount, match="no account"), atomic():
        ledger.credit(987_654, 5, EntryKind.GRANT, memo="x")


# --- debits and the available balance ---------------------------------------------------------

def test_debit_records_a_negative_entry_and_may_take_exactly_what_is_available(app):
    user = make_user(credit=1_000)
    with atomic():
        ledger.hold(user.account.id, 300)
    with atomic():
        entry = ledger.debit(user.account.id, 700, EntryKind.EXPIRY, memo="expired")
    assert (entry.kind, entry.amount, entry.balance_after) == ("expiry", -700, 300)
    acct = account(user)
    assert (acct.balance, acct.held, acct.available) == (300, 300, 0)
    with pytest.raises(InsufficientFunds) as refused, atomic():
        ledger.debit(user.account.id, 1, EntryKind.EXPIRY, memo="expired")
    assert (refused.value.needed, refused.value.available) == (1, 0)
    assert ledger.verify() == []


def test_a_hold_may_take_exactly_what_is_available(app):
    user = make_user(credit=1_000)
    with atomic():
        ledger.hold(user.account.id, 1_000)
    with pytest.raises(InsufficientFunds), atomic():
        ledger.hold(user.account.id, 1)
    acct = account(user)
    assert (acct.balance, acct.held, acct.available) == (1_000, 1_000, 0)


# --- references ----------------------------------------------------------------------------------

@pytest.mark.parametrize("operation, kind", [("credit", EntryKind.TOPUP), ("debit", EntryKind.REFUND)])
def test_a_reference_used_by_one_account_is_refused_for_another(app, operation, kind):
    first = make_user("first@example.com", credit=5_000)
    second = make_user("second@example.com", credit=5_000)
    with atomic():
        getattr(ledger, operation)(first.account.id, 700, kind, memo="x", reference="stripe:pi_1")
    with pytest.raises(ReferenceConflict), atomic():
        getattr(ledger, operation)(second.account.id, 700, kind, memo="x", reference="stripe:pi_1")
    assert account(second).balance == 5_000 and len(entries(second)) == 1
    assert account(first).balance == 5_000 + (700 if operation == "credit" else -700)


def test_a_reference_used_for_one_kind_is_refused_for_another(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 700, EntryKind.TOPUP, memo="x", reference="ref-1")
    with pytest.raises(ReferenceConflict), atomic():
        ledger.credit(user.account.id, 700, EntryKind.GRANT, memo="x", reference="ref-1")
    with pytest.raises(ReferenceConflict), atomic():
        ledger.debit(user.account.id, 700, EntryKind.REFUND, memo="x", reference="ref-1")
    assert account(user).balance == 700 and len(entries(user)) == 1


def test_debit_with_reference_is_idempotent(app):
    user = make_user(credit=1_000)
    for _ in range(3):
        with atomic():
            entry = ledger.debit(user.account.id, 250, EntryKind.REFUND, memo="refund", reference="refund:1")
    assert (entry.amount, entry.balance_after, entry.reference) == (-250, 750, "refund:1")
    assert account(user).balance == 750
    assert entries(user)[1:] == [("refund", -250, 750, "refund:1")]


def test_a_repeated_debit_returns_the_first_entry_even_when_the_balance_no_longer_covers_it(app):
    """A payout recorded once and retried later (a webhook redelivered) is not refused for lack of funds."""
    user = make_user(credit=1_000)
    with atomic():
        first = ledger.debit(user.account.id, 600, EntryKind.REFUND, memo="refund", reference="refund:7")
    with atomic():
        ledger.hold(user.account.id, 400)  # nothing left available
    with atomic():
        again = ledger.debit(user.account.id, 600, EntryKind.REFUND, memo="refund", reference="refund:7")
    assert again == first
    acct = account(user)
    assert (acct.balance, acct.held) == (400, 400)


def test_a_repeated_reference_returns_the_first_entry(app):
    user = make_user()
    with atomic():
        first = ledger.credit(user.account.id, 700, EntryKind.TOPUP, memo="x", reference="ref-1")
    with atomic():
        ledger.credit(user.account.id, 5, EntryKind.GRANT, memo="later")
    with atomic():
        again = ledger.credit(user.account.id, 700, EntryKind.TOPUP, memo="x", reference="ref-1")
    assert again == first and again.balance_after == 700


# --- top-ups, releases, stale holds --------------------------------------------------------------

def test_only_a_top_up_moves_last_topup_at(app):
    user = make_user()
    paid_at = datetime(2031, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    with atomic():
        ledger.credit(user.account.id, 100, EntryKind.GRANT, memo="gift")
    assert account(user).last_topup_at is None
    with atomic():
        ledger.credit(user.account.id, 100, EntryKind.TOPUP, memo="card", topup_at=paid_at)
    acct = account(user)
    assert (acct.balance, acct.last_topup_at) == (200, paid_at)


def test_release_marks_the_hold_released_and_writes_no_entry(app):
    user = make_user(credit=1_000)
    with atomic():
        placed = ledger.hold(user.account.id, 400)
    with atomic():
        ledger.release(placed)
    assert hold_status(placed) == HoldStatus.RELEASED.value
    assert db.session.get(Hold, placed).closed_at is not None
    assert entries(user) == [("grant", 1_000, 1_000, None)]


def test_stale_holds_are_the_open_ones_placed_before_the_cutoff(app):
    user = make_user(credit=10_000)
    with atomic():
        settled, released, old, recent = (ledger.hold(user.account.id, n) for n in (100, 200, 300, 400))
    with atomic():
        ledger.settle(settled, 50)
        ledger.release(released)
    cutoff = utcnow()
    with atomic():
        db.session.execute(update(Hold).where(Hold.id != recent).values(created_at=cutoff - timedelta(hours=1)))
        db.session.execute(update(Hold).where(Hold.id == recent).values(created_at=cutoff))
    assert ledger.stale_holds(cutoff) == [(old, None, 300)]


# --- verify --------------------------------------------------------------------------------------

@pytest.mark.books_broken
def test_verify_reports_an_entry_whose_running_balance_is_wrong(app):
    """Entries are append-only (triggers refuse UPDATE and DELETE), but a bad INSERT is possible.

    The account's cached balance is kept equal to the sum of entries, so the only thing wrong
    is the inserted entry's balance_after: only the running-balance check can find it.
    """
    user = make_user(credit=1_000)
    account_id = user.account.id
    with atomic():
        bad = db.session.execute(insert(LedgerEntry).values(
            account_id=account_id, kind="adjustment", amount=500, balance_after=1_400, memo="bad import")
            .returning(LedgerEntry.id)).scalar()
        db.session.execute(update(Account).where(Account.id == account_id).values(balance=1_500))
    with atomic():
        ledger.credit(account_id, 1, EntryKind.GRANT, memo="later, correct")  # balance_after 1,501
    problems = ledger.verify()
    assert f"entry {bad}: balance_after 1400 != running sum 1500" in problems
    # Inserted behind the ledger's back, it is outside the hash chain too.
    assert any(p.startswith(f"entry {bad}: hash does not match") for p in problems)
    assert not any("balance " in p and "!= sum of entries" in p for p in problems)


def test_verify_keeps_a_running_balance_per_account(app):
    first = make_user("first@example.com", credit=1_000)
    second = make_user("second@example.com", credit=50)
    with atomic():
        ledger.credit(first.account.id, 10, EntryKind.GRANT, memo="x")
        ledger.credit(second.account.id, 7, EntryKind.GRANT, memo="x")
        ledger.debit(first.account.id, 3, EntryKind.EXPIRY, memo="x")
    assert ledger.verify() == []


@pytest.mark.books_broken
def test_verify_counts_only_open_holds(app):
    user = make_user(credit=10_000)
    with atomic():
        settled, released, _ = (ledger.hold(user.account.id, n) for n in (100, 200, 300))
    with atomic():
        ledger.settle(settled, 40)
        ledger.release(released)
    assert account(user).held == 300
    assert ledger.verify() == []
    with atomic():
        db.session.execute(update(Account).values(held=301))
    assert ledger.verify() == [f"account {user.account.id}: held 301 != sum of open holds 300"]
