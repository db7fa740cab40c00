"""The ledger's payment rules: paid top-ups move the expiry, expired credit refuses holds,
claw-backs may overdraw, and every entry extends the account's hash chain."""
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from portal import ledger
from portal.database import atomic
from portal.errors import CreditsExpired, InsufficientFunds
from portal.extensions import db
from portal.models import Account, EntryKind, LedgerEntry, utcnow
from tests.domain.test_concurrency import race
from tests.factories import make_user


def account(user) -> Account:
    db.session.rollback()
    return db.session.get(Account, user.account.id)


def moment(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_a_paid_topup_moves_the_expiry_and_a_grant_does_not(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 1_000, EntryKind.GRANT, memo="welcome")
    assert (account(user).last_topup_at, account(user).credits_expire_at) == (None, None)
    paid_at = moment(2027, 3, 31, 12)
    with atomic():
        ledger.credit(user.account.id, 5_000_000, EntryKind.TOPUP, memo="card", topup_at=paid_at)
    row = account(user)
    assert (row.last_topup_at, row.credits_expire_at) == (paid_at, moment(2028, 3, 31, 12))


def test_an_older_topup_recorded_late_never_shortens_the_expiry(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 1_000, EntryKind.TOPUP, memo="new", topup_at=moment(2027, 6, 1))
        ledger.credit(user.account.id, 1_000, EntryKind.TOPUP, memo="old, late", topup_at=moment(2027, 1, 1))
    row = account(user)
    assert (row.last_topup_at, row.credits_expire_at) == (moment(2027, 6, 1), moment(2028, 6, 1))


def test_expired_credit_refuses_a_hold_saying_when(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 5_000, EntryKind.TOPUP, memo="card", topup_at=utcnow() - timedelta(days=400))
    expired_at = account(user).credits_expire_at
    with pytest.raises(CreditsExpired) as refused, atomic():
        ledger.hold(user.account.id, 1)
    assert refused.value.expired_at == expired_at
    assert f"expired on {expired_at:%Y-%m-%d}" in str(refused.value)
    assert account(user).held == 0


def test_unexpired_credit_holds_and_too_little_is_not_called_expired(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 5_000, EntryKind.TOPUP, memo="card", topup_at=utcnow())
        ledger.hold(user.account.id, 4_000)
    with pytest.raises(InsufficientFunds) as refused, atomic():
        ledger.hold(user.account.id, 2_000)
    assert not isinstance(refused.value, CreditsExpired)
    assert refused.value.available == 1_000


def test_claw_back_overdraws_once_per_reference(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 10_000, EntryKind.TOPUP, memo="card", topup_at=utcnow())
        ledger.debit(user.account.id, 8_000, EntryKind.ADJUSTMENT, memo="spent")
    for _ in range(2):
        with atomic():
            ledger.claw_back(user.account.id, 10_000, EntryKind.DISPUTE, memo="disputed", reference="stripe:dispute:dp_1")
    assert account(user).balance == -8_000
    with pytest.raises(InsufficientFunds), atomic():
        ledger.hold(user.account.id, 0)


@pytest.mark.parametrize("kind", [EntryKind.CHARGE, EntryKind.GRANT, EntryKind.EXPIRY])
def test_claw_back_is_only_for_money_returned_to_the_payer(app, kind):
    user = make_user()
    with pytest.raises(ValueError), atomic():
        ledger.claw_back(user.account.id, 1, kind, memo="x", reference="r")


def test_claw_back_needs_a_reference(app):
    user = make_user()
    with pytest.raises(ValueError), atomic():
        ledger.claw_back(user.account.id, 1, EntryKind.REFUND, memo="x", reference="")


def test_every_entry_extends_the_chain_and_the_account_keeps_its_head(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 10_000, EntryKind.TOPUP, memo="card", topup_at=utcnow(), reference="t1")
        hold_id = ledger.hold(user.account.id, 3_000)
        ledger.settle(hold_id, 2_500, memo="call")
        ledger.claw_back(user.account.id, 100, EntryKind.REFUND, memo="refunded", reference="re_1")
    rows = db.session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == user.account.id)
                              .order_by(LedgerEntry.id)).all()
    previous = ledger.GENESIS
    for row in rows:
        assert row.entry_hash == ledger.chain_hash(previous, row.account_id, row.kind, row.amount, row.balance_after,
                                                   row.reference, row.memo, ledger.stamp(row.created_at))
        previous = row.entry_hash
    assert len({r.entry_hash for r in rows}) == 3
    assert account(user).chain_head == rows[-1].entry_hash
    assert ledger.verify() == []


@pytest.mark.books_broken
def test_verify_reports_a_chain_head_left_behind(app):
    user = make_user(credit=1_000)
    with atomic():
        db.session.execute(update(Account).where(Account.id == user.account.id).values(chain_head="0" * 64))
    assert ledger.verify() == [f"account {user.account.id}: chain head does not match its newest entry "
                               "(the newest entries were removed or replaced)"]


def test_settle_says_once_when_the_balance_first_falls_below_the_threshold(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 1_500_000, EntryKind.TOPUP, memo="card", topup_at=utcnow())
    crossings = []
    for cost in (400_000, 400_000, 400_000):  # 1.1, 0.7 (crosses $1), 0.3
        with atomic():
            crossings.append(ledger.settle(ledger.hold(user.account.id, cost), cost).low_balance)
    assert crossings == [False, True, False]
    with atomic():  # a top-up re-arms it
        ledger.credit(user.account.id, 1_000_000, EntryKind.TOPUP, memo="card", topup_at=utcnow())
        assert ledger.settle(ledger.hold(user.account.id, 500_000), 500_000).low_balance is True


def test_of_charges_racing_below_the_threshold_exactly_one_says_so(app):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 1_800_000, EntryKind.TOPUP, memo="card", topup_at=utcnow())
        holds = [ledger.hold(user.account.id, 200_000) for _ in range(8)]
    pending = list(holds)
    lock = threading.Lock()

    def attempt():
        with lock:
            hold_id = pending.pop()
        with atomic():
            return ledger.settle(hold_id, 200_000).low_balance

    outcomes = race(app, 8, attempt)
    assert sorted(outcomes) == [False] * 7 + [True]
    assert account(user).low_balance_armed is False


@pytest.mark.parametrize("enabled, card, held, due", [
    (True, "pm_1", 0, False),         # $6 available, threshold $5
    (True, "pm_1", 2_000_000, True),  # a call in flight leaves $4 available
    (False, "pm_1", 2_000_000, False),
    (True, None, 2_000_000, False),
])
def test_settle_says_when_an_automatic_topup_is_due(app, enabled, card, held, due):
    user = make_user()
    with atomic():
        ledger.credit(user.account.id, 8_000_000, EntryKind.TOPUP, memo="card", topup_at=utcnow())
        db.session.execute(update(Account).where(Account.id == user.account.id).values(
            auto_topup_enabled=enabled, auto_topup_payment_method=card, auto_topup_threshold=5_000_000))
        if held:
            ledger.hold(user.account.id, held)
        entry = ledger.settle(ledger.hold(user.account.id, 2_000_000), 2_000_000)
    assert entry.auto_topup_due is due
