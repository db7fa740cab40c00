import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from portal import ledger
from portal.database import atomic
from portal.errors import HoldNotOpen, InsufficientFunds, InvalidAmount, ReferenceConflict
from portal.extensions import db
from portal.models import Account, EntryKind, Hold, HoldStatus, LedgerEntry
from tests.factories import make_user


def account(user) -> Account:
    db.session.rollback()  # end the read snapshot; see the rows as committed now
    return db.session.get(Account, user.account.id)


def entries(user) -> list[tuple[str, int, int]]:
    rows = db.session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == user.account.id)
                              .order_by(LedgerEntry.id))
    return [(e.kind, e.amount, e.balance_after) for e in rows]


def test_credit_writes_entry_and_balance(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 1_500_000, EntryKind.GRANT, memo="welcome")
        ledger.credit(user.account.id, 250, EntryKind.TOPUP, memo="card")
    assert account(user).balance == 1_500_250
    assert entries(user) == [("grant", 1_500_000, 1_500_000), ("topup", 250, 1_500_250)]
    assert ledger.verify() == []


def test_credit_with_reference_is_idempotent(app):
    user = make_user()
    for _ in range(3):
        with atomic():
            entry = ledger.credit(user.account.id, 700, EntryKind.TOPUP, memo="pi_1", reference="stripe:pi_1")
    assert entry.amount == 700
    assert account(user).balance == 700
    assert len(entries(user)) == 1


def test_reference_reused_for_other_amount_is_refused(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 700, EntryKind.TOPUP, memo="x", reference="ref-1")
    with pytest.raises(ReferenceConflict), atomic():
        ledger.credit(user.account.id, 701, EntryKind.TOPUP, memo="x", reference="ref-1")
    assert account(user).balance == 700


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, "10"])
def test_credit_refuses_non_positive_or_non_integer(app, amount):
    user = make_user()
    with pytest.raises(InvalidAmount), atomic():
        ledger.credit(user.account.id, amount, EntryKind.GRANT, memo="x")
    assert account(user).balance == 0


def test_debit_is_conditional_on_available_balance(app):
    user = make_user(credit=1_000)
    with atomic():
        ledger.hold(user.account.id, 600)
    with pytest.raises(InsufficientFunds) as refused, atomic():
        ledger.debit(user.account.id, 401, EntryKind.EXPIRY, memo="expired")
    assert refused.value.available == 400
    with atomic():
        ledger.debit(user.account.id, 400, EntryKind.EXPIRY, memo="expired")
    acct = account(user)
    assert (acct.balance, acct.held) == (600, 600)
    assert ledger.verify() == []


def test_hold_settle_charges_exact_cost_and_releases_rest(app):
    user = make_user(credit=10_000)
    with atomic():
        placed = ledger.hold(user.account.id, 4_000, memo="call")
    acct = account(user)
    assert (acct.balance, acct.held, acct.available) == (10_000, 4_000, 6_000)
    with atomic():
        entry = ledger.settle(placed, 1_234, memo="call")
    assert (entry.kind, entry.amount, entry.balance_after, entry.hold_id) == ("charge", -1_234, 8_766, placed)
    acct = account(user)
    assert (acct.balance, acct.held) == (8_766, 0)
    assert db.session.get(Hold, placed).status == HoldStatus.SETTLED.value
    assert ledger.verify() == []


def test_release_returns_hold_whole(app):
    user = make_user(credit=10_000)
    with atomic():
        placed = ledger.hold(user.account.id, 4_000)
    with atomic():
        ledger.release(placed)
    acct = account(user)
    assert (acct.balance, acct.held) == (10_000, 0)
    assert entries(user) == [("grant", 10_000, 10_000)]


def test_hold_beyond_available_is_refused_and_changes_nothing(app):
    user = make_user(credit=1_000)
    with atomic():
        ledger.hold(user.account.id, 999)
    with pytest.raises(InsufficientFunds) as refused, atomic():
        ledger.hold(user.account.id, 2)
    assert (refused.value.needed, refused.value.available) == (2, 1)
    acct = account(user)
    assert (acct.balance, acct.held) == (1_000, 999)
    assert db.session.scalar(select(db.func.count()).select_from(Hold)) == 1


@pytest.mark.parametrize("close", ["settle", "release"])
def test_a_hold_closes_exactly_once(app, close):
    user = make_user(credit=1_000)
    with atomic():
        placed = ledger.hold(user.account.id, 500)
    with atomic():
        ledger.settle(placed, 100)
    with pytest.raises(HoldNotOpen), atomic():
        ledger.settle(placed, 100) if close == "settle" else ledger.release(placed)
    acct = account(user)
    assert (acct.balance, acct.held) == (900, 0)
    assert ledger.verify() == []


def test_settle_above_hold_charges_exact_cost_and_blocks_further_holds(app):
    user = make_user(credit=1_000)
    with atomic():
        placed = ledger.hold(user.account.id, 900)
    with atomic():
        ledger.settle(placed, 1_300, memo="input estimate was low")
    acct = account(user)
    assert (acct.balance, acct.held) == (-300, 0)
    with pytest.raises(InsufficientFunds), atomic():
        ledger.hold(user.account.id, 0)
    assert ledger.verify() == []


def test_failed_block_rolls_back_every_money_row(app):
    user = make_user(credit=1_000)
    with pytest.raises(RuntimeError), atomic():
        placed = ledger.hold(user.account.id, 500)
        ledger.settle(placed, 200)
        raise RuntimeError("the usage record could not be written")
    acct = account(user)
    assert (acct.balance, acct.held) == (1_000, 0)
    assert db.session.scalar(select(db.func.count()).select_from(Hold)) == 0
    assert ledger.verify() == []


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entry SET amount = amount + 1",
    "DELETE FROM ledger_entry",
])
def test_ledger_entries_cannot_be_changed_or_deleted(app, statement):
    make_user(credit=1_000)
    with pytest.raises(DBAPIError, match="append-only"), atomic():
        db.session.execute(text(statement))
    assert db.session.scalar(select(LedgerEntry.amount)) == 1_000


@pytest.mark.books_broken
def test_verify_reports_every_kind_of_discrepancy(app):
    user = make_user(credit=1_000)
    with atomic():
        ledger.hold(user.account.id, 300)
    with atomic():
        db.session.execute(update(Account).values(balance=Account.balance + 5, held=0))
    problems = ledger.verify()
    assert f"account {user.account.id}: balance 1005 != sum of entries 1000" in problems
    assert f"account {user.account.id}: held 0 != sum of open holds 300" in problems
    assert len(problems) == 2


def test_release_stale_undoes_holds_of_crashed_calls(app, cli):
    from datetime import timedelta
    from portal import apikeys, calls, catalog
    from portal.models import ApiKey, utcnow
    from portal.pricing import Price
    user = make_user(credit=10_000)
    account_id = user.account.id
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("m", "echo", Price(input=1_000_000, output=1_000_000))  # 1 micro-dollar a token
        key, plaintext = apikeys.issue(user, "k")
        apikeys.set_limits(key, apikeys.Limits(spend_cap_total=1_000_000))
    caller = apikeys.authenticate(plaintext)
    model = catalog.serving_model("m")
    crashed = calls.open_call("req_crashed", caller, model, calls.Usage(input=4_000), calls.Bounds(8_000, 0),
                              client_ip=None, route="chat", streamed=True)
    assert db.session.get(Account, account_id).held == 4_000
    assert "released 0 stale hold(s)" in cli("ledger", "release-stale").output  # too recent
    assert calls.release_stale(utcnow() + timedelta(seconds=1)) == [crashed.hold_id]
    db.session.rollback()
    acct = db.session.get(Account, account_id)
    assert (acct.balance, acct.held) == (10_000, 0)
    assert db.session.scalar(select(ApiKey.held)) == 0
    assert ledger.verify() == []
    # The crashed call's late settlement finds its hold closed and charges nothing.
    with pytest.raises(HoldNotOpen):
        calls.close_call(crashed, calls.Outcome("ok", calls.Usage(input=5, output=5)))
    db.session.rollback()
    assert db.session.get(Account, account_id).balance == 10_000
