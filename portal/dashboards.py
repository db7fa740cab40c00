"""The console's dashboards: revenue, spend and margin, upstream health, top users, open holds.

Figures are per UTC day, money in integer micro-dollars. A million usage records must not make
the console slow, so usage is read from daily rollups wherever it can be:

- `refresh_rollups` (run by the periodic job, expiry.run_due) sums each closed day's usage
  records into three small tables: per upstream and model (`usage_day`), per account
  (`usage_account_day`) and per upstream and latency bucket (`usage_latency_day`), and marks the
  day in `rollup_day`. A day is closed `SETTLE_MARGIN` after its end: a call's record is written
  when the call ends, under the day it started.
- A dashboard reads the rolled-up days of its period from the rollups and everything after the
  first day that is not rolled up (today, normally) live from `usage_record`, through the
  `started_at` index. Without the job (or before its first run) the figures are the same, only
  slower: every day is then read live.

Latency percentiles come from bucket counts (`BUCKETS_MS`), interpolated within the bucket, so
they are exact to within the bucket they fall in; the rollups could not merge exact
percentiles across days. Money flows (top-ups, refunds, disputes) are few rows and are read from
`payment` and the ledger directly, by indexes on their time.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Optional

from sqlalchemy import Date, case, delete, func, insert, literal, literal_column, select, union_all
from sqlalchemy.exc import IntegrityError

from .database import atomic
from .errors import InvalidInput
from .extensions import db
from .models import (Account, CatalogModel, EntryKind, Hold, HoldStatus, LedgerEntry, Payment, PaymentStatus,
                     RollupDay, Upstream, UsageAccountDay, UsageDay, UsageLatencyDay, UsageRecord, User, utcnow)

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
# A day's rollup is made this long after the day ended: calls that started before midnight and
# ended after it are written by then.
SETTLE_MARGIN = timedelta(hours=2)
# Upper bounds, in milliseconds, of the latency buckets; a last bucket takes everything slower.
BUCKETS_MS = (5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, 700, 1_000, 1_500, 2_000, 3_000, 4_000,
              5_000, 7_000, 10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000,
              300_000, 600_000)
METRICS = ("duration", "first_byte")
# Outcomes that are not failures of the gateway or the upstream.
NOT_ERRORS = ("ok", "client_disconnected")
TOP_USERS = 10
OLDEST_HOLDS = 10

_usage = UsageRecord.__table__


def _upstream_cost():
    """`usage_record.upstream_cost` (what the call cost the operator), or NULL before that column exists."""
    column = _usage.c.get("upstream_cost")
    return column if column is not None else literal_column("NULL")


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def utc_day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


@dataclass(frozen=True)
class Period:
    """The last `days` UTC days, today included."""

    days: int
    now: datetime

    @property
    def today(self) -> date:
        return utc_day(self.now)

    @property
    def first_day(self) -> date:
        return self.today - timedelta(days=self.days - 1)

    @property
    def start(self) -> datetime:
        return day_start(self.first_day)

    def each_day(self) -> list[date]:
        return [self.first_day + timedelta(days=n) for n in range(self.days)]


def period(raw: Optional[str], now: Optional[datetime] = None) -> Period:
    """The period the console asked for (`?days=7|30|90`); InvalidInput for anything else."""
    if raw in (None, ""):
        days = DEFAULT_PERIOD
    else:
        try:
            days = int(raw)
        except ValueError:
            days = 0
        if days not in PERIODS:
            raise InvalidInput(f"Choose a period of {', '.join(map(str, PERIODS))} days.", field="days")
    return Period(days, now or utcnow())


def _live_from(p: Period) -> date:
    """The first day of the period that is not rolled up: from it on, usage is read live."""
    rolled = set(db.session.scalars(select(RollupDay.day).where(RollupDay.day >= p.first_day,
                                                                RollupDay.day < p.today)))
    day = p.first_day
    while day in rolled:
        day += timedelta(days=1)
    return day


# -- revenue --------------------------------------------------------------------------------

@dataclass
class RevenueDay:
    day: date
    topups: int = 0
    refunds: int = 0
    disputes: int = 0

    @property
    def net(self) -> int:
        return self.topups - self.refunds - self.disputes


@dataclass
class Revenue:
    days: list[RevenueDay]

    @property
    def topups(self) -> int:
        return sum(d.topups for d in self.days)

    @property
    def refunds(self) -> int:
        return sum(d.refunds for d in self.days)

    @property
    def disputes(self) -> int:
        return sum(d.disputes for d in self.days)

    @property
    def net(self) -> int:
        return self.topups - self.refunds - self.disputes


def revenue(p: Period) -> Revenue:
    """Per day: paid top-ups (by when they were paid), refunds paid back and disputes taken by banks."""
    by_day = {day: RevenueDay(day) for day in p.each_day()}
    paid_day = _day_of(Payment.paid_at).label("day")
    paid = select(paid_day, func.sum(Payment.amount)).where(
        Payment.status == PaymentStatus.PAID.value, Payment.paid_at >= p.start).group_by(paid_day)
    for day, amount in db.session.execute(paid):
        row = by_day.get(_as_date(day))
        if row is not None:  # None: after the period's end (a period in the past, as tests ask for)
            row.topups += int(amount)
    # Money that went back: refund payouts and Stripe refunds are `refund` debits, bank disputes
    # `dispute` debits (a positive `refund` entry is credit given back to a balance, not money out).
    entry_day = _day_of(LedgerEntry.created_at).label("day")
    returned = select(LedgerEntry.kind, entry_day, func.sum(LedgerEntry.amount)).where(
        LedgerEntry.kind.in_((EntryKind.REFUND.value, EntryKind.DISPUTE.value)),
        LedgerEntry.created_at >= p.start, LedgerEntry.amount < 0).group_by(LedgerEntry.kind, entry_day)
    for kind, day, amount in db.session.execute(returned):
        row = by_day.get(_as_date(day))
        if row is None:
            continue
        if kind == EntryKind.REFUND.value:
            row.refunds -= int(amount)
        else:
            row.disputes -= int(amount)
    return Revenue(list(by_day.values()))


# -- usage: spend and margin per model, health per upstream, spend per day --------------------

@dataclass
class ModelRow:
    model_id: int
    name: str = ""
    calls: int = 0
    errors: int = 0
    spend: int = 0
    costed_calls: int = 0
    costed_spend: int = 0
    upstream_cost: int = 0

    @property
    def margin(self) -> Optional[int]:
        """Charged minus what the upstream cost, over the calls whose cost is known; None: no cost price."""
        return self.costed_spend - self.upstream_cost if self.costed_calls else None

    @property
    def uncosted_calls(self) -> int:
        return self.calls - self.costed_calls


_USAGE_SUMS = ("calls", "errors", "spend", "costed_calls", "costed_spend", "upstream_cost")


def _live_sums(group_by):
    """Sums over live usage records in the shape of `usage_day`'s columns."""
    known = _upstream_cost().is_not(None)
    return [*group_by,
            func.count().label("calls"),
            func.coalesce(func.sum(case((_usage.c.status.not_in(NOT_ERRORS), 1), else_=0)), 0).label("errors"),
            func.coalesce(func.sum(_usage.c.cost), 0).label("spend"),
            func.coalesce(func.sum(case((known, 1), else_=0)), 0).label("costed_calls"),
            func.coalesce(func.sum(case((known, _usage.c.cost), else_=0)), 0).label("costed_spend"),
            func.coalesce(func.sum(_upstream_cost()), 0).label("upstream_cost")]


def _usage_by(p: Period, live_from: date, rolled_key, live_key) -> dict[int, dict[str, int]]:
    """Usage sums per key (model or upstream) over the period: rollups, then live records."""
    totals: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_USAGE_SUMS, 0))
    rolled = select(rolled_key, *(func.sum(getattr(UsageDay, name)) for name in _USAGE_SUMS)).where(
        UsageDay.day >= p.first_day, UsageDay.day < live_from).group_by(rolled_key)
    live = select(*_live_sums([live_key])).where(_usage.c.started_at >= day_start(live_from)).group_by(live_key)
    for query in (rolled, live):
        for key, *sums in db.session.execute(query):
            row = totals[key]
            for name, value in zip(_USAGE_SUMS, sums):
                row[name] += int(value or 0)
    return totals


def models(p: Period, live_from: Optional[date] = None) -> list[ModelRow]:
    """Calls, spend and margin per model over the period, biggest spend first."""
    live_from = live_from or _live_from(p)
    totals = _usage_by(p, live_from, UsageDay.model_id, _usage.c.model_id)
    names = dict(db.session.execute(select(CatalogModel.id, CatalogModel.public_id)
                                    .where(CatalogModel.id.in_(list(totals)))).all()) if totals else {}
    rows = [ModelRow(model_id, names.get(model_id, f"model #{model_id}"), **sums) for model_id, sums in totals.items()]
    return sorted(rows, key=lambda r: (-r.spend, r.name))


@dataclass
class UpstreamRow:
    upstream_id: int
    name: str
    calls: int
    errors: int
    latency: dict[str, dict[int, int]]  # metric -> bucket -> calls

    @property
    def error_rate(self) -> Optional[float]:  # a ratio for display, never money
        return self.errors / self.calls if self.calls else None

    def percentile(self, metric: str, q: float) -> Optional[int]:
        return percentile(self.latency.get(metric, {}), q)


def percentile(buckets: dict[int, int], q: float) -> Optional[int]:
    """The q-quantile (0 < q < 1), in whole ms, of calls counted per latency bucket; None without calls.

    Interpolated linearly within the bucket it falls in; the open last bucket answers its lower bound.
    """
    total = sum(buckets.values())
    if not total:
        return None
    target = q * total
    seen = 0
    for index in sorted(buckets):
        count = buckets[index]
        if seen + count >= target and count:
            low = BUCKETS_MS[index - 1] if index > 0 else 0
            if index >= len(BUCKETS_MS):
                return BUCKETS_MS[-1]
            high = BUCKETS_MS[index]
            return round(low + (high - low) * (target - seen) / count)
        seen += count
    return BUCKETS_MS[-1]


def bucket_of(column):
    """The latency bucket of a duration column, as SQL."""
    return case(*((column <= bound, index) for index, bound in enumerate(BUCKETS_MS)), else_=len(BUCKETS_MS))


def upstreams(p: Period, live_from: Optional[date] = None) -> list[UpstreamRow]:
    """Calls, errors and latency (total and to the first byte) per upstream over the period."""
    live_from = live_from or _live_from(p)
    totals = _usage_by(p, live_from, UsageDay.upstream_id, _usage.c.upstream_id)
    latency: dict[int, dict[str, dict[int, int]]] = defaultdict(lambda: {m: defaultdict(int) for m in METRICS})
    rolled = select(UsageLatencyDay.upstream_id, UsageLatencyDay.metric, UsageLatencyDay.bucket,
                    func.sum(UsageLatencyDay.calls)).where(
        UsageLatencyDay.day >= p.first_day, UsageLatencyDay.day < live_from).group_by(
        UsageLatencyDay.upstream_id, UsageLatencyDay.metric, UsageLatencyDay.bucket)
    for upstream_id, metric, bucket, calls in db.session.execute(rolled):
        latency[upstream_id][metric][bucket] += int(calls)
    for metric, column in (("duration", _usage.c.duration_ms), ("first_byte", _usage.c.first_byte_ms)):
        bucket = bucket_of(column).label("bucket")
        live = select(_usage.c.upstream_id, bucket, func.count()).where(
            _usage.c.started_at >= day_start(live_from), column.is_not(None)).group_by(_usage.c.upstream_id, bucket)
        for upstream_id, index, calls in db.session.execute(live):
            latency[upstream_id][metric][index] += int(calls)
    names = dict(db.session.execute(select(Upstream.id, Upstream.name)).all())
    rows = [UpstreamRow(upstream_id, names.get(upstream_id, f"upstream #{upstream_id}"), sums["calls"],
                        sums["errors"], latency[upstream_id]) for upstream_id, sums in totals.items()]
    return sorted(rows, key=lambda r: (-r.calls, r.name))


def _day_of(column):
    """A timestamp column's UTC day, as SQL (SQLite keeps UTC text; Postgres converts)."""
    if db.session.get_bind().dialect.name == "sqlite":
        return func.date(column)
    return func.date(func.timezone("UTC", column))


def _as_date(value) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def spend_per_day(p: Period, live_from: Optional[date] = None) -> list[tuple[date, int, int]]:
    """(day, calls, spend) for each day of the period."""
    live_from = live_from or _live_from(p)
    by_day = {day: [0, 0] for day in p.each_day()}
    rolled = select(UsageDay.day, func.sum(UsageDay.calls), func.sum(UsageDay.spend)).where(
        UsageDay.day >= p.first_day, UsageDay.day < live_from).group_by(UsageDay.day)
    day = _day_of(_usage.c.started_at).label("day")
    live = select(day, func.count(), func.coalesce(func.sum(_usage.c.cost), 0)).where(
        _usage.c.started_at >= day_start(live_from)).group_by(day)
    for query in (rolled, live):
        for when, calls, spend in db.session.execute(query):
            when = _as_date(when)
            if when in by_day:
                by_day[when][0] += int(calls)
                by_day[when][1] += int(spend)
    return [(day, calls, spend) for day, (calls, spend) in by_day.items()]


# -- people and holds -----------------------------------------------------------------------

@dataclass(frozen=True)
class TopUser:
    user_id: int
    email: str
    calls: int
    spend: int


def top_users(p: Period, live_from: Optional[date] = None, limit: int = TOP_USERS) -> list[TopUser]:
    """The accounts that spent most over the period."""
    live_from = live_from or _live_from(p)
    rolled = select(UsageAccountDay.account_id.label("account_id"), UsageAccountDay.calls.label("calls"),
                    UsageAccountDay.spend.label("spend")).where(
        UsageAccountDay.day >= p.first_day, UsageAccountDay.day < live_from)
    live = select(_usage.c.account_id.label("account_id"), func.count().label("calls"),
                  func.sum(_usage.c.cost).label("spend")).where(
        _usage.c.started_at >= day_start(live_from)).group_by(_usage.c.account_id)
    both = union_all(rolled, live).subquery()
    spend = func.sum(both.c.spend).label("spend")
    best = select(both.c.account_id, func.sum(both.c.calls).label("calls"), spend).group_by(
        both.c.account_id).order_by(spend.desc(), both.c.account_id).limit(limit).subquery()
    rows = db.session.execute(select(User.id, User.email, best.c.calls, best.c.spend).join(
        Account, Account.id == best.c.account_id).join(User, User.id == Account.user_id).order_by(
        best.c.spend.desc(), best.c.account_id))
    return [TopUser(user_id, email, int(calls), int(spend or 0)) for user_id, email, calls, spend in rows]


@dataclass(frozen=True)
class OpenHold:
    hold_id: int
    user_id: int
    email: str
    amount: int
    created_at: datetime


@dataclass
class Holds:
    count: int
    total: int
    oldest_at: Optional[datetime]
    oldest: list[OpenHold] = field(default_factory=list)

    def oldest_age(self, now: datetime) -> Optional[timedelta]:
        return now - self.oldest_at if self.oldest_at else None


def open_holds() -> Holds:
    """Money reserved by calls in flight now (or left by calls that never finished)."""
    is_open = Hold.status == HoldStatus.OPEN.value
    count, total, oldest_at = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Hold.amount), 0), func.min(Hold.created_at)).where(is_open)).one()
    if isinstance(oldest_at, str):  # an aggregate's result skips the column's type on SQLite
        oldest_at = datetime.fromisoformat(oldest_at)
    if oldest_at is not None and oldest_at.tzinfo is None:
        oldest_at = oldest_at.replace(tzinfo=timezone.utc)
    oldest = [OpenHold(*row) for row in db.session.execute(
        select(Hold.id, User.id, User.email, Hold.amount, Hold.created_at).join(Account, Account.id == Hold.account_id)
        .join(User, User.id == Account.user_id).where(is_open).order_by(Hold.created_at, Hold.id).limit(OLDEST_HOLDS))]
    return Holds(int(count), int(total), oldest_at, oldest)


# -- the whole page --------------------------------------------------------------------------

@dataclass
class Dashboard:
    period: Period
    revenue: Revenue
    spend_per_day: list[tuple[date, int, int]]
    models: list[ModelRow]
    upstreams: list[UpstreamRow]
    top_users: list[TopUser]
    holds: Holds
    live_from: date

    @property
    def spend(self) -> int:
        return sum(row.spend for row in self.models)

    @property
    def calls(self) -> int:
        return sum(row.calls for row in self.models)


def dashboard(p: Period) -> Dashboard:
    """Every figure of the console's home page for the period."""
    live_from = _live_from(p)
    return Dashboard(p, revenue(p), spend_per_day(p, live_from), models(p, live_from), upstreams(p, live_from),
                     top_users(p, live_from), open_holds(), live_from)


# -- rollups ---------------------------------------------------------------------------------

def closed_days(now: datetime, keep_days: int = max(PERIODS)) -> list[date]:
    """The days a rollup may be made for now: ended SETTLE_MARGIN ago, within the longest period."""
    last = utc_day(now - SETTLE_MARGIN) - timedelta(days=1)
    first = utc_day(now) - timedelta(days=keep_days - 1)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def roll_up(day: date, now: Optional[datetime] = None) -> None:
    """(Re)make one day's rollup rows from its usage records, in one transaction."""
    now = now or utcnow()
    start, end = day_start(day), day_start(day + timedelta(days=1))
    in_day = (_usage.c.started_at >= start, _usage.c.started_at < end)
    the_day = literal(day, Date)
    with atomic():
        for table in (UsageDay, UsageAccountDay, UsageLatencyDay, RollupDay):
            db.session.execute(delete(table).where(table.day == day))
        db.session.execute(insert(UsageDay).from_select(
            ["day", "upstream_id", "model_id", *_USAGE_SUMS],
            select(*_live_sums([the_day, _usage.c.upstream_id, _usage.c.model_id])).where(*in_day)
            .group_by(_usage.c.upstream_id, _usage.c.model_id)))
        db.session.execute(insert(UsageAccountDay).from_select(
            ["day", "account_id", "calls", "spend"],
            select(the_day, _usage.c.account_id, func.count(), func.coalesce(func.sum(_usage.c.cost), 0))
            .where(*in_day).group_by(_usage.c.account_id)))
        for metric, column in (("duration", _usage.c.duration_ms), ("first_byte", _usage.c.first_byte_ms)):
            bucket = bucket_of(column)
            db.session.execute(insert(UsageLatencyDay).from_select(
                ["day", "upstream_id", "metric", "bucket", "calls"],
                select(the_day, _usage.c.upstream_id, literal(metric), bucket, func.count())
                .where(*in_day, column.is_not(None)).group_by(_usage.c.upstream_id, bucket)))
        db.session.add(RollupDay(day=day, rolled_at=now))


def refresh_rollups(now: Optional[datetime] = None) -> list[date]:
    """Roll up every closed day of the longest period that is not rolled up yet; the days rolled."""
    now = now or utcnow()
    days = closed_days(now)
    if not days:
        return []
    done = set(db.session.scalars(select(RollupDay.day).where(RollupDay.day >= days[0])))
    db.session.rollback()
    rolled = []
    for day in days:
        if day in done:
            continue
        try:
            roll_up(day, now)
        except IntegrityError:
            continue  # another process rolled it up at the same moment
        rolled.append(day)
    return rolled
