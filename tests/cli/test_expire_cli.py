"""`flask credits expire [--now ISO8601]`: what it expired and warned, and a rerun that does nothing."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, EntryKind, LedgerEntry, utcnow
from tests.factories import make_user
from tests.web.helpers import outbox

TOPUP_AT = datetime(2027, 3, 31, 9, 30, tzinfo=timezone.utc)  # credits expire 2028-03-31 09:30 UTC


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def accounts(app):
    ids = []
    for email, amount in (("gone@example.com", 5_000_000), ("soon@example.com", 2_000_000)):
        user = make_user(email)
        with atomic():
            ledger.credit(user.account.id, amount, EntryKind.TOPUP, memo="card",
                          topup_at=TOPUP_AT if email.startswith("gone") else datetime(2027, 4, 20, tzinfo=timezone.utc))
        ids.append(user.account.id)
    return ids


def test_expire_reports_what_it_did_and_a_rerun_does_nothing(app, cli, accounts):
    gone, soon = accounts
    output = ok(cli("credits", "expire", "--now", "2028-04-01T00:00:00Z"))
    assert f"expired $5.00 of account {gone} (gone@example.com): credits expired on 2028-03-31" in output
    assert f"warned soon@example.com (account {soon}, $2.00): credits expire on 2028-04-20, 30-day warning" in output
    assert "expired $5.00 in 1 account(s), sent 1 warning(s)" in output
    db.session.rollback()
    assert db.session.get(Account, gone).balance == 0
    assert len(outbox(app)) == 2

    output = ok(cli("credits", "expire", "--now", "2028-04-01T01:00:00+01:00"))
    assert output.strip() == "expired $0.00 in 0 account(s), sent 0 warning(s), skipped 0 with calls in flight"
    assert len(db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "expiry")).all()) == 1


def test_now_in_another_timezone_is_the_same_moment(app, cli, accounts):
    # 2028-03-31 10:00 at +02:00 is 08:00 UTC: half an hour before the date.
    assert "expired $0.00 in 0 account(s)" in ok(cli("credits", "expire", "--now", "2028-03-31T10:00:00+02:00"))
    assert "expired $5.00 in 1 account(s)" in ok(cli("credits", "expire", "--now", "2028-03-31T11:30:00+02:00"))


def test_without_now_it_uses_the_clock(app, cli):
    for email, days_ago in (("lapsed@example.com", 400), ("current@example.com", 300)):
        user = make_user(email)
        with atomic():
            ledger.credit(user.account.id, 1_000_000, EntryKind.TOPUP, memo="card",
                          topup_at=utcnow() - timedelta(days=days_ago))
    output = ok(cli("credits", "expire"))
    assert "(lapsed@example.com)" in output and "current@example.com" not in output
    assert "expired $1.00 in 1 account(s)" in output


@pytest.mark.parametrize("value, message", [
    ("2028-04-01T00:00:00", "has no timezone"),
    ("next tuesday", "is not an ISO 8601 date and time"),
])
def test_a_bad_now_is_refused(app, cli, accounts, value, message):
    result = cli("credits", "expire", "--now", value)
    assert result.exit_code != 0 and message in result.output
    db.session.rollback()
    assert db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "expiry")).all() == []
