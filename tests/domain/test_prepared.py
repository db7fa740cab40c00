"""Statements run on the driver's cursor (portal/prepared.py) do exactly what Connection.execute does.

Each test runs one statement both ways on the same backend (SQLite and Postgres) and compares the
rows written and returned: Python-side defaults, fixed literals, typed binds (datetimes, JSON),
result types, driver errors as SQLAlchemy's, and listeners on the cursor events still called.
"""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, event, select, text
from sqlalchemy.exc import IntegrityError

from portal import database, prepared
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, Hold, HoldStatus, LedgerEntry
from tests.factories import make_user

_hold = Hold.__table__
_entry = LedgerEntry.__table__
INSERT_HOLD = _hold.insert().values(account_id=bindparam("account_id"), amount=bindparam("amount"),
                                    memo=bindparam("memo"),
                                    call_details=bindparam("call_details", type_=_hold.c.call_details.type)
                                    ).returning(_hold.c.id, _hold.c.created_at)
INSERT_HOLD_PLAIN = _hold.insert()  # no .values(): the columns are the parameters given
CLOSE_OPEN = (_hold.update().where(_hold.c.id == bindparam("hold_id"), _hold.c.status == HoldStatus.OPEN.value)
              .values(status=bindparam("status"), closed_at=bindparam("closed_at"))
              .returning(_hold.c.account_id, _hold.c.amount, _hold.c.closed_at))
HOLDS_OF = select(_hold.c.id, _hold.c.amount, _hold.c.status, _hold.c.created_at, _hold.c.call_details).where(
    _hold.c.account_id == bindparam("account_id")).order_by(_hold.c.id)
INSERT_ENTRY = _entry.insert()
# These write single rows (an open hold without its account's held amount, a lone ledger entry) to
# compare the two ways of running them, so the books do not add up afterwards by design.
pytestmark = pytest.mark.books_broken


def both_ways(statement, params: dict):
    """Run `statement` through Prepared, then through Connection.execute, each in its own transaction."""
    with atomic():
        fast = prepared.run(database.connection(), statement, params)
    with atomic():
        plain = database.connection().execute(statement, params)
        plain_rows = list(plain.all()) if plain.returns_rows else []
        plain_count = plain.rowcount
    return fast, (plain_count, plain_rows)


def test_an_insert_fills_defaults_and_binds_types_as_execute_does(app):
    user = make_user()
    details = {"model": 3, "route": "chat", "名": "模型"}
    fast, (_, plain_rows) = both_ways(INSERT_HOLD, {"account_id": user.account.id, "amount": 1234, "memo": "m",
                                                    "call_details": details})
    (fast_id, fast_created), (plain_id, plain_created) = fast.one(), plain_rows[0]
    assert fast_id != plain_id and fast.rowcount == 1
    # The RETURNING column comes back through the type's result processor: an aware datetime, as execute gives.
    assert type(fast_created) is type(plain_created) is datetime
    assert fast_created.tzinfo is not None and plain_created.tzinfo is not None
    assert abs(fast_created - plain_created) < timedelta(minutes=5)
    db.session.rollback()
    rows = list(prepared.run(db.session.connection(), HOLDS_OF, {"account_id": user.account.id}))
    orm = list(db.session.execute(HOLDS_OF, {"account_id": user.account.id}))
    assert [tuple(r) for r in rows] == [tuple(r) for r in orm]
    assert [(r.amount, r.status, r.call_details) for r in rows] == [(1234, "open", details)] * 2  # defaults applied
    assert rows[0].id == fast_id and rows[0].created_at == fast_created


def test_a_plain_insert_sets_only_the_columns_given(app):
    user = make_user()
    now = datetime(2026, 11, 28, 12, 30, 15, 123456, tzinfo=timezone.utc)
    params = {"account_id": user.account.id, "amount": 5, "status": "settled", "memo": "plain", "created_at": now}
    fast, _ = both_ways(INSERT_HOLD_PLAIN, params)
    assert fast.rowcount == 1  # (execute's is -1 on Postgres, which returns the new id instead)
    db.session.rollback()
    holds = db.session.scalars(select(Hold).where(Hold.account_id == user.account.id).order_by(Hold.id)).all()
    assert [(h.amount, h.status, h.memo, h.created_at, h.call_details) for h in holds] == \
        [(5, "settled", "plain", now, None)] * 2


def test_a_fixed_literal_in_the_condition_is_bound(app):
    user = make_user()
    with atomic():
        hold_id = prepared.run(database.connection(), INSERT_HOLD, {"account_id": user.account.id, "amount": 9,
                                                                    "memo": "", "call_details": None}).scalar()
    closed_at = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)
    params = {"hold_id": hold_id, "status": "settled", "closed_at": closed_at}
    with atomic():
        first = prepared.run(database.connection(), CLOSE_OPEN, params)
    with atomic():
        again = prepared.run(database.connection(), CLOSE_OPEN, params)  # no longer open: matches nothing
    assert first.rowcount == 1 and first.one() == (user.account.id, 9, closed_at)
    assert first.one().closed_at == closed_at and first.one().account_id == user.account.id
    assert again.rowcount == 0 and again.first() is None and again.scalar() is None


def test_a_driver_error_is_sqlalchemys_and_the_transaction_rolls_back(app):
    user = make_user()
    row = {"account_id": user.account.id, "kind": "grant", "amount": 10, "balance_after": 10,
           "reference": "same-reference", "memo": "", "created_at": datetime.now(timezone.utc), "entry_hash": "x" * 64}
    with atomic():
        prepared.run(database.connection(), INSERT_ENTRY, row)
    with pytest.raises(IntegrityError) as raised, atomic():
        prepared.run(database.connection(), INSERT_HOLD, {"account_id": user.account.id, "amount": 1, "memo": "",
                                                          "call_details": None})
        prepared.run(database.connection(), INSERT_ENTRY, {**row, "entry_hash": "y" * 64})  # reference is unique
    assert "same-reference" in str(raised.value) or "reference" in str(raised.value).lower()
    db.session.rollback()
    assert db.session.scalar(select(Hold.id).where(Hold.account_id == user.account.id)) is None  # rolled back
    assert db.session.scalars(select(LedgerEntry.entry_hash).where(
        LedgerEntry.account_id == user.account.id)).all() == ["x" * 64]


def test_a_missing_parameter_is_named_and_runs_nothing(app):
    user = make_user()
    with pytest.raises(KeyError, match="amount"), atomic():
        prepared.run(database.connection(), INSERT_HOLD, {"account_id": user.account.id, "memo": "",
                                                          "call_details": None})
    db.session.rollback()
    assert db.session.scalar(select(Hold.id).where(Hold.account_id == user.account.id)) is None


def test_listeners_on_the_cursor_events_still_see_every_statement(app):
    user = make_user()
    seen = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.split()[0].upper())

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        with atomic():
            ran = prepared.run(database.connection(), INSERT_HOLD, {"account_id": user.account.id, "amount": 3,
                                                                    "memo": "", "call_details": {"a": 1}})
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
    assert "INSERT" in seen
    hold_id, created_at = ran.one()
    assert isinstance(hold_id, int) and isinstance(created_at, datetime)
    db.session.rollback()
    assert db.session.get(Hold, hold_id).call_details == {"a": 1}


def test_the_key_statements_match_the_orm(app):
    """apikeys.reserve/settle_spend on the cursor: the key's columns end as the ORM computes them."""
    from portal import apikeys

    user = make_user()
    with atomic():
        key, _ = apikeys.issue(user, "k")
    key_id = key.id
    with atomic():
        apikeys.reserve(key_id, 700, "203.0.113.9")
    with atomic():
        apikeys.settle_spend(key_id, 700, 450)
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    assert (key.held, key.spent_total, key.spent_month, key.last_used_ip) == (0, 450, 450, "203.0.113.9")
    assert key.spent_month_key == datetime.now(timezone.utc).strftime("%Y-%m")
    assert key.last_used_at is not None and key.last_used_at.tzinfo is not None


COUNTER = text("INSERT INTO rate_counter (name, expires, count) VALUES (:name, :expires, :count) RETURNING count")
COUNTER_OF = text("SELECT name, count FROM rate_counter WHERE name = :name")


def test_a_text_statement_returns_the_drivers_rows(app):
    """text() has no columns to type: its RETURNING and SELECT rows come back as the driver gives them."""
    with atomic():
        ran = prepared.run(database.connection(), COUNTER, {"name": "prepared-test", "expires": 10**12, "count": 7})
    assert ran.first() == (7,) and ran.scalar() == 7
    db.session.rollback()
    assert list(prepared.run(db.session.connection(), COUNTER_OF, {"name": "prepared-test"})) == [("prepared-test", 7)]
    assert prepared.run(db.session.connection(), COUNTER_OF, {"name": "no-such"}).first() is None
