"""The low-balance mail: once when a charge takes the available balance below the threshold, until a top-up."""
import threading

import pytest

from portal import apikeys, calls, catalog, ledger, mail, notices
from portal.database import atomic
from portal.errors import InvalidAmount
from portal.extensions import db
from portal.models import Account, EntryKind, utcnow
from portal.pricing import Price, Usage
from tests.factories import make_user
from tests.web.helpers import outbox

PRICE = Price(input=1_000_000, output=2_000_000)  # 1 and 2 micro-USD a token
CALL = Usage(input=0, output=300_000)             # $0.60 a call
OWNER = "owner@example.com"


@pytest.fixture
def caller(app):
    user = make_user(OWNER, credit=2_000_000)  # $2, above the default $1 threshold
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("m", "echo", PRICE)
        _, plaintext = apikeys.issue(user, "k")
    return apikeys.authenticate(plaintext)


def charge(caller, usage=CALL) -> int:
    """One call that costs `usage`, settled; then wait for any mail it handed to the background sender."""
    call = calls.open_call(calls.new_request_id(), caller, catalog.serving_model("m"), Usage(output=300_000),
                           calls.Bounds(input=10_000_000, output=300_000), client_ip=None, route="chat",
                           streamed=False)
    cost = calls.close_call(call, calls.Outcome("ok", usage))
    notices.drain()
    return cost


def alerts(app) -> list:
    return [m for m in outbox(app) if m["To"] == OWNER]


def account(caller) -> Account:
    db.session.rollback()
    return db.session.get(Account, caller.account_id)


def set_threshold(caller, amount: int) -> None:
    with atomic():
        notices.set_low_balance_threshold(db.session.get(Account, caller.account_id), amount)


def topup(caller, amount: int) -> None:
    with atomic():
        ledger.credit(caller.account_id, amount, EntryKind.TOPUP, memo="card", topup_at=utcnow())


def test_one_mail_when_the_balance_first_falls_below_the_threshold(app, caller):
    charge(caller)                    # $1.40 left
    assert alerts(app) == []
    charge(caller)                    # $0.80: below $1
    [message] = alerts(app)
    assert message["Subject"] == "Your balance is below $1.00"
    body = message.get_content()
    assert "$0.80" in body and "$1.00" in body and "http://localhost/billing/" in body
    charge(caller)                    # $0.20: still below, no second mail
    assert len(alerts(app)) == 1
    assert account(caller).low_balance_armed is False


def test_a_top_up_re_arms_the_mail(app, caller):
    charge(caller)
    charge(caller)
    assert len(alerts(app)) == 1
    topup(caller, 500_000)            # $1.30, armed again
    assert account(caller).low_balance_armed is True
    charge(caller)                    # $0.70
    assert len(alerts(app)) == 2


def test_a_grant_does_not_re_arm_it(app, caller):
    charge(caller)
    charge(caller)
    with atomic():
        ledger.credit(caller.account_id, 5_000_000, EntryKind.GRANT, memo="goodwill")
    charge(caller)
    charge(caller)
    assert len(alerts(app)) == 1


def test_a_threshold_of_zero_never_mails_even_below_zero(app, caller):
    set_threshold(caller, 0)
    charge(caller, Usage(input=2_500_000, output=0))  # more than the hold and the balance: $2.50
    assert account(caller).balance == -500_000
    assert alerts(app) == []


def test_the_response_does_not_wait_for_the_mail(app, caller, monkeypatch):
    gate, started = threading.Event(), threading.Event()
    real_send = mail.send

    def slow_send(*args):
        started.set()
        gate.wait(30)  # not a timing assertion: only so that a mail sent inline fails the test instead of hanging it
        real_send(*args)

    monkeypatch.setattr(mail, "send", slow_send)
    charge(caller)
    call = calls.open_call(calls.new_request_id(), caller, catalog.serving_model("m"), Usage(output=300_000),
                           calls.Bounds(input=1_000, output=300_000), client_ip=None, route="chat", streamed=False)
    try:
        assert calls.close_call(call, calls.Outcome("ok", CALL)) == 600_000  # returned while the mail is stuck
        assert started.wait(10) and alerts(app) == []
    finally:
        gate.set()
    notices.drain()
    assert len(alerts(app)) == 1


def test_a_threshold_above_the_balance_does_not_mail_at_once(app, caller):
    set_threshold(caller, 5_000_000)  # $5 while $2 is available
    assert account(caller).low_balance_armed is False
    charge(caller)
    assert alerts(app) == []
    topup(caller, 10_000_000)         # $11.40: armed
    set_threshold(caller, 5_000_000)
    assert account(caller).low_balance_armed is True


def test_lowering_the_threshold_below_the_balance_re_arms_it(app, caller):
    charge(caller)
    charge(caller)                    # mailed at $0.80
    set_threshold(caller, 500_000)    # $0.50: $0.80 is above it again
    assert account(caller).low_balance_armed is True
    charge(caller)                    # $0.20
    assert sorted(m["Subject"] for m in alerts(app)) == ["Your balance is below $0.50", "Your balance is below $1.00"]


@pytest.mark.parametrize("amount", [-1, 1_000_000_000_001, 1.5, True, "1000000", None])
def test_threshold_out_of_range_is_refused(app, caller, amount):
    with pytest.raises(InvalidAmount) as refused:
        set_threshold(caller, amount)
    assert refused.value.field == "low_balance_threshold"
    assert "between $0.00 and $1,000,000.00" in str(refused.value)
    assert account(caller).low_balance_threshold == 1_000_000


def test_a_closed_account_is_not_mailed(app, caller):
    with atomic():
        db.session.get(Account, caller.account_id).user.status = "terminated"
    with atomic():
        assert notices.send_low_balance(caller.account_id) is False
    assert alerts(app) == []
