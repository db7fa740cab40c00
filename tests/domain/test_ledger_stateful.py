"""Hypothesis drives random grant/hold/settle/release sequences against a simple model of the books."""
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import func, select

from portal import ledger, users
from portal.database import atomic
from portal.errors import HoldNotOpen, InsufficientFunds
from portal.extensions import db
from portal.models import Account, EntryKind, Hold, HoldStatus, LedgerEntry
from tests.conftest import make_app

amounts = st.integers(min_value=0, max_value=15_000)


def ledger_machine(database, tmp_path):
    class Books(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.app = make_app(database, tmp_path)
            self.ctx = self.app.app_context()
            self.ctx.push()
            with atomic():
                self.account_id = users.create_user("stateful@example.com").account.id
            self.balance = 0
            self.open_holds: dict[int, int] = {}
            self.closed_holds: list[int] = []

        def teardown(self):
            db.session.remove()
            db.engine.dispose()
            self.ctx.pop()

        @rule(amount=st.integers(min_value=1, max_value=10_000))
        def grant(self, amount):
            with atomic():
                ledger.credit(self.account_id, amount, EntryKind.GRANT, memo="grant")
            self.balance += amount

        @rule(amount=amounts)
        def hold(self, amount):
            self._hold(amount)

        @rule(delta=st.integers(min_value=-2, max_value=2))
        def hold_at_the_edge(self, delta):
            """Ask for just under, exactly, or just over what is available: where off-by-ones live."""
            self._hold(max(0, self.balance - sum(self.open_holds.values()) + delta))

        def _hold(self, amount):
            available = self.balance - sum(self.open_holds.values())
            try:
                with atomic():
                    hold_id = ledger.hold(self.account_id, amount)
            except InsufficientFunds:
                assert available < amount, "refused a hold the available balance covered"
            else:
                assert available >= amount, "granted a hold the available balance did not cover"
                self.open_holds[hold_id] = amount

        @precondition(lambda self: self.open_holds)
        @rule(data=st.data(), cost=st.integers(min_value=0, max_value=20_000))
        def settle(self, data, cost):
            hold_id = data.draw(st.sampled_from(sorted(self.open_holds)))
            with atomic():
                ledger.settle(hold_id, cost)
            del self.open_holds[hold_id]
            self.closed_holds.append(hold_id)
            self.balance -= cost

        @precondition(lambda self: self.open_holds)
        @rule(data=st.data())
        def release(self, data):
            hold_id = data.draw(st.sampled_from(sorted(self.open_holds)))
            with atomic():
                ledger.release(hold_id)
            del self.open_holds[hold_id]
            self.closed_holds.append(hold_id)

        @precondition(lambda self: self.closed_holds)
        @rule(data=st.data(), settle=st.booleans())
        def close_again(self, data, settle):
            hold_id = data.draw(st.sampled_from(self.closed_holds))
            with pytest.raises(HoldNotOpen), atomic():
                ledger.settle(hold_id, 1) if settle else ledger.release(hold_id)

        @invariant()
        def books_balance(self):
            db.session.rollback()
            account = db.session.get(Account, self.account_id)
            entries = db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                                        .where(LedgerEntry.account_id == self.account_id))
            open_holds = db.session.scalar(select(func.coalesce(func.sum(Hold.amount), 0))
                                           .where(Hold.account_id == self.account_id,
                                                  Hold.status == HoldStatus.OPEN.value))
            assert account.balance == entries == self.balance
            assert account.held == open_holds == sum(self.open_holds.values())
            assert ledger.verify() == []

    return Books


def test_ledger_invariants_hold_for_any_sequence(database, tmp_path):
    run_state_machine_as_test(
        ledger_machine(database, tmp_path),
        settings=settings(max_examples=25, stateful_step_count=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]),
    )
