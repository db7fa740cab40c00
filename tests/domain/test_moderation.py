"""moderation.py without HTTP: amounts as operators type them, the rules of each action, and that an
action and its audit entry land together or not at all."""
import pytest
from sqlalchemy import func, select

from portal import ledger, moderation, users
from portal.audit import Actor
from portal.database import atomic
from portal.errors import InvalidInput, UnknownUser
from portal.extensions import db
from portal.models import AuditEntry, EntryKind, User
from tests.factories import make_user


def count_entries() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(AuditEntry))


@pytest.mark.one_backend
@pytest.mark.parametrize("typed, micro", [("2", 2_000_000), ("+2", 2_000_000), ("-0.5", -500_000), (" - 0.5 ", -500_000),
                                         ("-$1.25", -1_250_000), ("0.000001", 1), ("-.5", -500_000)])
def test_signed_amounts_as_typed(typed, micro):
    assert moderation.parse_signed_usd(typed) == micro


@pytest.mark.one_backend
@pytest.mark.parametrize("typed, message", [("", "is not an amount"), ("-", "is not an amount"), ("0", "not be zero"),
                                            ("-0.00", "not be zero"), ("+-1", "one sign at most"),
                                            ("1e3", "is not an amount"), ("1,5", "is not an amount"),
                                            ("0.0000001", "is not an amount"), ("١", "is not an amount")])
def test_signed_amounts_refused(typed, message):
    with pytest.raises(InvalidInput, match=message):
        moderation.parse_signed_usd(typed)


def test_a_refused_debit_writes_nothing(app):
    user = make_user("a@example.com", credit=1_000_000)
    with atomic():
        ledger.hold(user.account.id, 400_000)
    with pytest.raises(InvalidInput, match=r"available balance of \$0.60 \(balance \$1.00, \$0.40 held"):
        with atomic():
            moderation.adjust_balance(Actor.cli(), users.find_user("a@example.com"), -700_000, "fix")
    assert count_entries() == 0
    with atomic():
        outcome = moderation.adjust_balance(Actor.cli(), users.find_user("a@example.com"), -600_000, "fix")
    assert outcome.changed and "balance $0.40" in outcome.message and count_entries() == 1


def test_terminated_accounts_are_found_by_their_old_address_and_left_alone(app):
    make_user("t@example.com", credit=1_000_000)
    with atomic():
        moderation.terminate(Actor.cli(), users.find_user("t@example.com"), "fraud")
    db.session.rollback()
    found = moderation.find_person("T@Example.com")
    assert found.status == "terminated" and found.email.endswith("@invalid")
    with atomic():
        again = moderation.terminate(Actor.cli(), found, "fraud")
        with pytest.raises(InvalidInput, match="terminated"):
            moderation.suspend(Actor.cli(), found, "x")
        with pytest.raises(InvalidInput, match="cannot be reinstated"):
            moderation.unsuspend(Actor.cli(), found, "x")
        with pytest.raises(InvalidInput, match="its balance cannot change"):
            moderation.adjust_balance(Actor.cli(), found, 1, "x")
    assert not again.changed and again.mail is None and count_entries() == 1
    with pytest.raises(UnknownUser):
        moderation.find_person("never@example.com")
    # Someone registering the freed address again is a new person: found first.
    make_user("t@example.com")
    assert moderation.find_person("t@example.com").status == "active"


def test_terminating_a_negative_balance_forfeits_nothing_and_keeps_the_debt_on_the_books(app):
    user = make_user("n@example.com", credit=1_000_000)
    with atomic():
        ledger.claw_back(user.account.id, 1_500_000, EntryKind.DISPUTE, memo="dispute", reference="dp_1")
    with atomic():
        outcome = moderation.terminate(Actor.cli(), db.session.get(User, user.id), "dispute lost")
    assert "$0.00 forfeited" in outcome.message
    db.session.rollback()
    assert db.session.get(User, user.id).account.balance == -500_000


def test_an_action_that_fails_after_its_entry_rolls_both_back(app):
    user = make_user("r@example.com")
    with pytest.raises(RuntimeError):
        with atomic():
            moderation.suspend(Actor.cli(), db.session.get(User, user.id), "spam")
            raise RuntimeError("the process died here")
    assert count_entries() == 0 and db.session.get(User, user.id).status == "active"


def test_the_reason_is_required_for_suspend_and_terminate(app):
    user = make_user("q@example.com")
    for action in (moderation.suspend, moderation.terminate):
        with pytest.raises(InvalidInput, match="Give a reason"):
            with atomic():
                action(Actor.cli(), db.session.get(User, user.id), "  ")
    assert count_entries() == 0
