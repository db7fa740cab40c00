"""The dashboards' figures: the same from rollups as from the records themselves, per UTC day."""
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, literal, select

from portal import apikeys, catalog, dashboards, ledger
from portal.database import atomic
from portal.errors import InvalidInput
from portal.extensions import db
from portal.models import (EntryKind, Payment, PaymentSource, PaymentStatus, RollupDay, UsageDay, UsageRecord,
                           utcnow)
from portal.pricing import Price
from tests.factories import earlier_today, make_model, make_user

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)
HAS_UPSTREAM_COST = "upstream_cost" in UsageRecord.__table__.c


class Calls:
    """Writes usage records as the proxy does (one row per call) at chosen times; keeps what it wrote."""

    def __init__(self):
        self.rows = []
        self.keys = {}

    def key(self, user):
        if user.id not in self.keys:
            with atomic():
                key, _ = apikeys.issue(db.session.merge(user), "k")
            self.keys[user.id] = key.id
        return self.keys[user.id]

    def add(self, user, model, started_at, *, cost=1_000, status="ok", duration_ms=100, first_byte_ms=40,
            upstream_cost=None, client_ip="203.0.113.7"):
        model = db.session.merge(model)
        row = dict(request_id=f"req_{uuid.uuid4().hex}", account_id=user.account.id, api_key_id=self.key(user),
                   model_id=model.id, upstream_id=model.upstream_id, price_id=catalog.current_price(model.id).id,
                   cost=cost, status=status, started_at=started_at, duration_ms=duration_ms,
                   first_byte_ms=first_byte_ms, client_ip=client_ip)
        if HAS_UPSTREAM_COST:
            row["upstream_cost"] = upstream_cost
        with atomic():
            db.session.execute(UsageRecord.__table__.insert().values(**row))
        self.rows.append(row)
        return row


@pytest.fixture
def calls(app):
    return Calls()


@pytest.fixture
def world(app, calls):
    """Two upstreams, three models, three people, calls spread over 100 days around NOW."""
    alpha = make_model("alpha-large", upstream="alpha")
    alpha_small = make_model("alpha-small", price=Price(input=1_000_000, output=2_000_000), upstream="alpha")
    beta = make_model("beta-chat", upstream="beta")
    ann, bob, cat = (make_user(f"{n}@example.com") for n in ("ann", "bob", "cat"))
    plan = [  # (user, model, days before NOW, hour, cost, status, duration, first byte)
        (ann, alpha, 0, 1, 5_000_000, "ok", 120, 30), (ann, alpha, 0, 11, 2_500_000, "ok", 900, 300),
        (bob, beta, 0, 2, 700_000, "upstream_error", 40, None), (bob, alpha_small, 1, 23, 333_333, "ok", 2_500, 800),
        (cat, beta, 1, 0, 1, "client_disconnected", 10_000, 5_000), (ann, beta, 3, 5, 9_999_999, "ok", 300, 90),
        (bob, alpha, 6, 0, 123_456, "upstream_timeout", 600_000, None), (cat, alpha, 7, 12, 42, "ok", 75, 20),
        (cat, alpha_small, 12, 8, 10_000_000, "ok", 50, 10), (ann, beta, 29, 13, 77_777, "ok", 5, 5),
        (bob, beta, 45, 3, 8_000_000, "ok", 1_000, 500), (cat, alpha, 89, 0, 55, "ok", 200, 100),
        (ann, alpha, 95, 0, 1_000_000_000, "ok", 100, 10),  # before the longest period
    ]
    for user, model, days, hour, cost, status, duration, first_byte in plan:
        day = NOW.date() - timedelta(days=days)
        calls.add(user, model, datetime(day.year, day.month, day.day, hour, 30, tzinfo=timezone.utc), cost=cost,
                  status=status, duration_ms=duration, first_byte_ms=first_byte,
                  upstream_cost=cost // 2 if model.public_id == "alpha-large" else None)
    return {"models": (alpha, alpha_small, beta), "users": (ann, bob, cat)}


def expected(rows, days):
    first = NOW.date() - timedelta(days=days - 1)
    return [r for r in rows if first <= r["started_at"].date() <= NOW.date()]


def figures(p):
    """Everything the page shows, in comparable form."""
    board = dashboards.dashboard(p)
    return {
        "models": [(m.name, m.calls, m.errors, m.spend, m.costed_calls, m.costed_spend, m.upstream_cost)
                   for m in board.models],
        "upstreams": [(u.name, u.calls, u.errors, u.percentile("duration", 0.5), u.percentile("duration", 0.95),
                       u.percentile("first_byte", 0.5)) for u in board.upstreams],
        "top": [(t.email, t.calls, t.spend) for t in board.top_users],
        "per_day": board.spend_per_day,
    }


@pytest.mark.parametrize("days", [7, 30, 90])
def test_rollups_and_live_records_give_the_same_figures(world, calls, days):
    p = dashboards.period(str(days), NOW)
    live = figures(p)
    rolled = dashboards.refresh_rollups(NOW)
    # Every closed day of the longest period is rolled up; today and the day before (closed less
    # than SETTLE_MARGIN ago? no: 12:00 is long after) are as the rule says.
    assert rolled[0] == NOW.date() - timedelta(days=89) and rolled[-1] == NOW.date() - timedelta(days=1)
    assert dashboards._live_from(p) == NOW.date()
    assert figures(p) == live
    assert dashboards.refresh_rollups(NOW) == []  # done once

    rows = expected(calls.rows, days)
    board = dashboards.dashboard(p)
    assert board.calls == len(rows)
    assert board.spend == sum(r["cost"] for r in rows)
    by_model = {m.name: m for m in board.models}
    for name in {r["model_id"] for r in rows}:
        mine = [r for r in rows if r["model_id"] == name]
        model = next(m for m in by_model.values() if m.model_id == name)
        assert model.spend == sum(r["cost"] for r in mine)
        assert model.errors == sum(r["status"] not in ("ok", "client_disconnected") for r in mine)
    assert [row[0] for row in board.spend_per_day] == p.each_day()
    assert sum(spend for _, _, spend in board.spend_per_day) == board.spend
    spent = {}
    for r in rows:
        spent[r["account_id"]] = spent.get(r["account_id"], 0) + r["cost"]
    assert [t.spend for t in board.top_users] == sorted(spent.values(), reverse=True)


def test_days_are_utc_days_and_the_period_includes_today(world, calls):
    p = dashboards.period("7", NOW)
    assert (p.first_day, p.today) == (date(2026, 6, 9), date(2026, 6, 15))
    per_day = dict((day, (n, spend)) for day, n, spend in dashboards.spend_per_day(p))
    assert per_day[date(2026, 6, 15)] == (3, 5_000_000 + 2_500_000 + 700_000)
    assert per_day[date(2026, 6, 14)] == (2, 333_333 + 1)  # 23:30 and 00:30 UTC the same day
    assert per_day[date(2026, 6, 9)] == (1, 123_456)  # six days back: inside; seven days back is not
    assert date(2026, 6, 8) not in per_day


def test_a_day_with_a_rollup_is_not_counted_twice_and_a_hole_is_read_live(world, calls):
    p = dashboards.period("30", NOW)
    before = figures(p)
    dashboards.refresh_rollups(NOW)
    # A hole in the rollups (a day whose rollup failed, say): from it on, figures are read live.
    hole = NOW.date() - timedelta(days=12)
    with atomic():
        db.session.execute(RollupDay.__table__.delete().where(RollupDay.day == hole))
    assert dashboards._live_from(p) == hole
    assert figures(p) == before
    dashboards.roll_up(hole, NOW)
    assert dashboards._live_from(p) == NOW.date() and figures(p) == before


def test_only_closed_days_are_rolled_up():
    just_after_midnight = datetime(2026, 6, 15, 1, 0, tzinfo=timezone.utc)
    days = dashboards.closed_days(just_after_midnight)
    assert days[-1] == date(2026, 6, 13)  # the 14th ended an hour ago: calls from it may still be settling
    assert dashboards.closed_days(just_after_midnight + dashboards.SETTLE_MARGIN)[-1] == date(2026, 6, 14)
    assert len(days) == 88 and days[0] == date(2026, 3, 18)


def test_rolling_up_a_day_again_replaces_its_rows(world, calls):
    day = NOW.date()- timedelta(days=1)
    dashboards.roll_up(day, NOW)
    dashboards.roll_up(day, NOW)
    assert db.session.scalar(select(func.sum(UsageDay.calls)).where(UsageDay.day == day)) == 2


def test_margin_is_spend_minus_upstream_cost_where_known(world):
    rows = {m.name: m for m in dashboards.models(dashboards.period("90", NOW))}
    for name in ("alpha-small", "beta-chat"):
        assert rows[name].margin is None  # no cost price: the page says so
    large = rows["alpha-large"]
    if HAS_UPSTREAM_COST:
        spend = 5_000_000 + 2_500_000 + 123_456 + 42 + 55
        assert (large.costed_calls, large.costed_spend) == (5, spend)
        assert large.margin == spend - sum(c // 2 for c in (5_000_000, 2_500_000, 123_456, 42, 55))
    else:
        assert large.margin is None and large.uncosted_calls == large.calls == 5


def test_upstream_health(world):
    rows = {u.name: u for u in dashboards.upstreams(dashboards.period("7", NOW))}
    alpha, beta = rows["alpha"], rows["beta"]
    assert (alpha.calls, alpha.errors) == (4, 1)  # the timeout
    assert (beta.calls, beta.errors) == (3, 1)    # the 500; a client hanging up is not the upstream's error
    # alpha: 120, 900, 2500, 600000 ms. The median lies in the buckets of 900 and 2,500 ms.
    assert 700 <= alpha.percentile("duration", 0.5) <= 1_000
    assert 300_000 < alpha.percentile("duration", 0.95) <= 600_000  # in the slowest call's bucket
    assert beta.percentile("first_byte", 0.5) is not None  # a call without a first byte is left out
    assert rows["alpha"].error_rate == 0.25


@pytest.mark.parametrize("buckets, q, answer", [
    ({}, 0.5, None),
    ({6: 10}, 0.5, 88),            # all in (75, 100]: halfway
    ({0: 1, 13: 1}, 0.5, 5),       # the first of two
    ({0: 1, 13: 1}, 0.95, 970),    # 90% into the 700-1000 bucket
    ({len(dashboards.BUCKETS_MS): 3}, 0.5, 600_000),  # slower than the last bound: that bound
])
@pytest.mark.one_backend
def test_percentile_from_buckets(buckets, q, answer):
    assert dashboards.percentile(buckets, q) == answer


def test_bucket_bounds_are_inclusive(app, calls):
    make_user("b@example.com")
    for ms, bucket in ((5, 0), (6, 1), (10, 1), (600_000, len(dashboards.BUCKETS_MS) - 1),
                       (600_001, len(dashboards.BUCKETS_MS))):
        assert db.session.scalar(select(dashboards.bucket_of(literal(ms)))) == bucket


def test_revenue_per_day_counts_paid_topups_refunds_and_disputes(app):
    user = make_user("payer@example.com")
    now = utcnow()
    account_id = user.account.id
    with atomic():
        for n, (status, amount, paid_at) in enumerate([
                (PaymentStatus.PAID, 20_000_000, earlier_today(now, 5)),
                (PaymentStatus.PAID, 5_000_000, now - timedelta(days=2)),
                (PaymentStatus.PENDING, 7_000_000, None),
                (PaymentStatus.PAID, 9_000_000, now - timedelta(days=40))]):
            db.session.add(Payment(account_id=account_id, source=PaymentSource.MANUAL.value, status=status.value,
                                   amount=amount, reference=f"bank-{n}", refunded=0, disputed=0, paid_at=paid_at))
        ledger.credit(account_id, 34_000_000, EntryKind.TOPUP, memo="the payments above")
        ledger.debit(account_id, 3_000_000, EntryKind.REFUND, memo="refund request 1", reference="refund-by-hand:1:1")
        ledger.claw_back(account_id, 1_500_000, EntryKind.DISPUTE, memo="disputed", reference="stripe:dispute:dp_1")
        ledger.credit(account_id, 250_000, EntryKind.REFUND, memo="a charge given back as credit")
    revenue = dashboards.revenue(dashboards.period("30", now))
    today = revenue.days[-1]
    assert (today.day, today.topups, today.refunds, today.disputes) == (now.date(), 20_000_000, 3_000_000, 1_500_000)
    assert (revenue.topups, revenue.refunds, revenue.disputes) == (25_000_000, 3_000_000, 1_500_000)
    assert revenue.net == 20_500_000
    assert dashboards.revenue(dashboards.period("90", now)).topups == 34_000_000


def test_open_holds(app):
    user = make_user("holder@example.com", credit=10_000_000)
    assert dashboards.open_holds().count == 0
    with atomic():
        first = ledger.hold(user.account.id, 1_000_000)
        ledger.hold(user.account.id, 250_000)
        closed = ledger.hold(user.account.id, 99)
    with atomic():
        ledger.release(closed)
    holds = dashboards.open_holds()
    assert (holds.count, holds.total) == (2, 1_250_000)
    assert holds.oldest[0].hold_id == first and holds.oldest[0].email == "holder@example.com"
    assert holds.oldest_at.tzinfo is not None and holds.oldest_age(utcnow()) >= timedelta(0)
    with atomic():
        for hold in holds.oldest:
            ledger.release(hold.hold_id)


@pytest.mark.parametrize("raw, days", [(None, 30), ("", 30), ("7", 7), ("30", 30), ("90", 90)])
@pytest.mark.one_backend
def test_period_choices(raw, days):
    assert dashboards.period(raw, NOW).days == days


@pytest.mark.parametrize("raw", ["5", "365", "abc", "7.0", "-7", "0"])
@pytest.mark.one_backend
def test_other_periods_are_refused(raw):
    with pytest.raises(InvalidInput) as error:
        dashboards.period(raw, NOW)
    assert error.value.field == "days"
