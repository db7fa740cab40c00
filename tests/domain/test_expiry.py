"""Credit expiry: the date rule, the job (idempotent, holds respected), the warnings, the job lock."""
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import expiry, ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, EntryKind, JobRun, LedgerEntry, Notice, utcnow
from tests.factories import make_user
from tests.web.helpers import outbox

UTC = timezone.utc
TOPUP_AT = datetime(2027, 3, 31, 9, 30, tzinfo=UTC)
EXPIRES_AT = datetime(2028, 3, 31, 9, 30, tzinfo=UTC)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("topup, expires", [
    (at(2027, 3, 31, 12), at(2028, 3, 31, 12)),   # 31 March: 2028 has one
    (at(2028, 2, 29, 8), at(2029, 2, 28, 8)),     # 29 February: the last day of February, not 1 March
    (at(2027, 12, 31, 23, 59), at(2028, 12, 31, 23, 59)),
    (at(2027, 1, 30), at(2028, 1, 30)),
    (at(2027, 2, 28), at(2028, 2, 28)),           # not "the last day of February" (29th in 2028)
    (at(2028, 2, 29, 23, 59, 59, 999_999), at(2029, 2, 28, 23, 59, 59, 999_999)),  # the time of day, exactly
    (at(2026, 12, 31), at(2027, 12, 31)),
    (at(2027, 1, 1), at(2028, 1, 1)),
])
def test_credits_last_twelve_calendar_months(topup, expires):
    assert ledger.expiry_after(topup) == expires


@pytest.mark.parametrize("start, months, result", [
    (at(2027, 1, 30), 1, at(2027, 2, 28)),
    (at(2028, 1, 31), 1, at(2028, 2, 29)),
    (at(2027, 12, 31), 2, at(2028, 2, 29)),
    (at(2027, 3, 31), 1, at(2027, 4, 30)),
    (at(2027, 11, 15), 3, at(2028, 2, 15)),
    (at(2027, 8, 31), 1, at(2027, 9, 30)),
    (at(2027, 11, 30), 3, at(2028, 2, 29)),
    (at(2027, 12, 15), 1, at(2028, 1, 15)),
])
def test_a_day_the_month_lacks_becomes_its_last(start, months, result):
    assert ledger.add_months(start, months) == result


def topped_up(email="owner@example.com", amount=5_000_000, when=TOPUP_AT) -> int:
    user = make_user(email)
    topup(user.account.id, amount, when)
    return user.account.id


def topup(account_id: int, amount: int, when: datetime) -> None:
    with atomic():
        ledger.credit(account_id, amount, EntryKind.TOPUP, memo="card", reference=f"pay:{account_id}:{when}",
                      topup_at=when)


def account(account_id: int) -> Account:
    db.session.rollback()
    return db.session.get(Account, account_id)


def expiries() -> list[LedgerEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == EntryKind.EXPIRY.value)))


def mail_to(app, address: str) -> list:
    return [m for m in outbox(app) if m["To"] == address]


def test_a_top_up_sets_the_date_and_a_later_one_moves_it(app):
    account_id = topped_up()
    assert (account(account_id).last_topup_at, account(account_id).credits_expire_at) == (TOPUP_AT, EXPIRES_AT)
    topup(account_id, 1_000_000, at(2028, 2, 29, 8))
    assert account(account_id).credits_expire_at == at(2029, 2, 28, 8)


def test_the_job_expires_the_whole_balance_once_and_mails_the_owner(app):
    account_id = topped_up(amount=5_000_000)
    with atomic():
        ledger.credit(account_id, 250_000, EntryKind.GRANT, memo="goodwill")  # granted credit goes too
    assert expiry.run(EXPIRES_AT - timedelta(seconds=1)).expired == []

    report = expiry.run(EXPIRES_AT)
    assert [(e.account_id, e.amount, e.expired_at) for e in report.expired] == [(account_id, 5_250_000, EXPIRES_AT)]
    [entry] = expiries()
    assert (entry.amount, entry.balance_after) == (-5_250_000, 0)
    assert entry.reference == f"expiry:{account_id}:2027-03-31T09:30:00.000000+00:00"
    assert account(account_id).balance == 0
    # (The run a second before sent the 7-day warning as well.)
    [message] = [m for m in mail_to(app, "owner@example.com") if m["Subject"] == "Your credits expired on 2028-03-31"]
    assert "$5.25" in message.get_content() and "http://localhost/billing/" in message.get_content()

    again = expiry.run(EXPIRES_AT + timedelta(days=3))
    assert (again.expired, again.warned, again.in_flight) == ([], [], [])
    assert len(expiries()) == 1 and len(mail_to(app, "owner@example.com")) == 2


def test_credit_added_after_the_expiry_without_a_top_up_is_not_expired_twice(app):
    # The reference names the top-up the expiry follows: the same top-up never expires twice.
    account_id = topped_up()
    expiry.run(EXPIRES_AT)
    with atomic():
        ledger.credit(account_id, 100_000, EntryKind.GRANT, memo="late goodwill")
    assert expiry.run(EXPIRES_AT + timedelta(days=1)).expired == []
    assert account(account_id).balance == 100_000 and len(expiries()) == 1


def test_a_new_top_up_starts_a_new_expiry(app):
    account_id = topped_up()
    expiry.run(EXPIRES_AT)
    later = at(2028, 6, 1)
    topup(account_id, 2_000_000, later)
    assert expiry.run(at(2029, 5, 31)).expired == []
    [second] = expiry.run(at(2029, 6, 1)).expired
    assert second.amount == 2_000_000
    assert [e.reference for e in expiries()] == [f"expiry:{account_id}:2027-03-31T09:30:00.000000+00:00",
                                                 f"expiry:{account_id}:2028-06-01T00:00:00.000000+00:00"]


def test_an_account_with_a_call_in_flight_waits_for_a_later_run(app):
    # The hold must be placed before the date (the ledger refuses holds after it), so this
    # account's date is a real year from now, and the job is told it is past it.
    account_id = topped_up(when=utcnow() - timedelta(days=1))
    expires_at = account(account_id).credits_expire_at
    with atomic():
        hold_id = ledger.hold(account_id, 1_000_000, memo="call")
    report = expiry.run(expires_at + timedelta(hours=1))
    assert (report.expired, report.in_flight) == ([], [account_id])
    assert expiries() == [] and account(account_id).balance == 5_000_000

    with atomic():
        ledger.settle(hold_id, 400_000)
    [expired] = expiry.run(expires_at + timedelta(hours=2)).expired
    assert expired.amount == 4_600_000
    assert (account(account_id).balance, account(account_id).held) == (0, 0)


def test_accounts_that_never_topped_up_never_expire(app):
    user = make_user("granted@example.com", credit=3_000_000)
    assert account(user.account.id).credits_expire_at is None
    report = expiry.run(at(2099, 1, 1))
    assert (report.expired, report.warned) == ([], [])
    assert account(user.account.id).balance == 3_000_000


def test_balances_at_or_below_zero_are_left_alone(app):
    negative = topped_up("negative@example.com", amount=1_000_000)
    with atomic():
        ledger.claw_back(negative, 1_500_000, EntryKind.DISPUTE, memo="dispute", reference="du_1")
    empty = topped_up("empty@example.com", amount=1_000_000)
    with atomic():
        ledger.debit(empty, 1_000_000, EntryKind.REFUND, memo="refund", reference="re_1")
    report = expiry.run(EXPIRES_AT + timedelta(days=1))
    assert (report.expired, report.in_flight) == ([], [])
    assert expiries() == []
    assert (account(negative).balance, account(empty).balance) == (-500_000, 0)


def test_warnings_go_30_and_7_days_ahead_each_once(app):
    account_id = topped_up(amount=5_000_000)
    assert expiry.run(EXPIRES_AT - timedelta(days=31)).warned == []

    [first] = expiry.run(EXPIRES_AT - timedelta(days=29)).warned
    assert (first.account_id, first.days, first.balance) == (account_id, 30, 5_000_000)
    assert expiry.run(EXPIRES_AT - timedelta(days=29)).warned == []
    assert expiry.run(EXPIRES_AT - timedelta(days=8)).warned == []

    [second] = expiry.run(EXPIRES_AT - timedelta(days=6)).warned
    assert second.days == 7
    assert expiry.run(EXPIRES_AT - timedelta(days=1)).warned == []

    messages = mail_to(app, "owner@example.com")
    assert [m["Subject"] for m in messages] == ["Your credits expire on 2028-03-31"] * 2
    body = messages[0].get_content()
    assert "$5.00" in body and "2028-03-31" in body and "http://localhost/billing/" in body
    assert len(db.session.scalars(select(Notice)).all()) == 2


def test_a_first_run_inside_the_last_week_sends_only_the_7_day_warning(app):
    topped_up()
    assert [w.days for w in expiry.run(EXPIRES_AT - timedelta(days=3)).warned] == [7]
    assert expiry.run(EXPIRES_AT - timedelta(days=2)).warned == []
    assert len(mail_to(app, "owner@example.com")) == 1


def test_a_top_up_after_a_warning_earns_new_warnings_for_the_new_date(app):
    account_id = topped_up()
    assert len(expiry.run(EXPIRES_AT - timedelta(days=20)).warned) == 1
    topup(account_id, 1_000_000, EXPIRES_AT - timedelta(days=10))
    new_date = account(account_id).credits_expire_at
    assert new_date == at(2029, 3, 21, 9, 30)
    assert expiry.run(EXPIRES_AT - timedelta(days=5)).warned == []  # the old date no longer applies
    [warning] = expiry.run(new_date - timedelta(days=29)).warned
    assert (warning.days, warning.expires_at, warning.balance) == (30, new_date, 6_000_000)


def test_no_warning_for_an_empty_balance(app):
    account_id = topped_up(amount=1_000_000)
    with atomic():
        ledger.debit(account_id, 1_000_000, EntryKind.REFUND, memo="refund", reference="re_2")
    assert expiry.run(EXPIRES_AT - timedelta(days=29)).warned == []


def test_two_runs_at_once_warn_and_expire_once(app):
    """Two processes running the job at the same moment: each warning and each expiry happens once."""
    warned_id = topped_up("warned@example.com")
    expired_id = topped_up("expired@example.com", when=TOPUP_AT - timedelta(days=40))
    now = EXPIRES_AT - timedelta(days=6)  # one account in its last week, the other past its date
    gate = threading.Barrier(2)
    reports = []

    def job():
        with app.app_context():
            gate.wait()
            reports.append(expiry.run(now))
            db.session.remove()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(w.account_id for r in reports for w in r.warned) == [warned_id]
    assert sorted(e.account_id for r in reports for e in r.expired) == [expired_id]
    assert len(expiries()) == 1
    assert len(mail_to(app, "warned@example.com")) == 1 and len(mail_to(app, "expired@example.com")) == 1


# -- the job lock ------------------------------------------------------------------------------

def claim(now, interval=3600):
    with atomic():
        return expiry.claim("expire", interval, now)


def test_one_claim_per_interval(app):
    start = at(2027, 5, 1, 12)
    assert claim(start) is True
    assert claim(start + timedelta(seconds=1)) is False
    assert claim(start + timedelta(minutes=50)) is False
    # A timer that fires a little early still takes its next turn (the margin).
    assert claim(start + timedelta(seconds=3600 - 30)) is True
    assert claim(start + timedelta(seconds=3600)) is False
    db.session.rollback()
    assert db.session.get(JobRun, "expire").started_at == start + timedelta(seconds=3570)


@pytest.mark.parametrize("first_row", [False, True], ids=["first-ever", "later-interval"])
def test_two_processes_claiming_at_once_one_wins(app, first_row):
    now = at(2027, 5, 1, 12)
    if first_row:
        assert claim(now - timedelta(hours=2))
    gate = threading.Barrier(2)
    results = []

    def contender():
        with app.app_context():
            gate.wait()
            results.append(claim(now))
            db.session.remove()

    threads = [threading.Thread(target=contender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]


def test_run_due_runs_the_job_once_per_interval(app):
    topped_up()
    now = EXPIRES_AT + timedelta(days=1)
    report = expiry.run_due(app, now)
    assert [e.amount for e in report.expired] == [5_000_000]
    assert expiry.run_due(app, now + timedelta(minutes=5)) is None
    db.session.rollback()
    row = db.session.get(JobRun, "expire")
    assert row.started_at == now and row.finished_at is not None


def test_run_due_is_off_when_the_interval_is_zero(app):
    topped_up()
    app.config["JOBS_INTERVAL_SECONDS"] = 0
    assert expiry.run_due(app, EXPIRES_AT + timedelta(days=1)) is None
    assert expiry.start_timer(app) is None
    assert expiries() == []


def test_the_timer_runs_the_job_at_once_then_waits_and_stops_when_told(app, monkeypatch):
    ran = threading.Event()
    monkeypatch.setattr(expiry, "run_due", lambda given, now=None: ran.set() if given is app else None)
    stop = expiry.start_timer(app)
    try:
        assert ran.wait(10)
    finally:
        stop.set()
