"""Reading usage records: lists, filters, daily spend and receipts. Never writes."""
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterator, Optional

from sqlalchemy import Select, select

from .catalog import as_price
from .extensions import db
from .models import ApiKey, LedgerEntry, CatalogModel, ModelPrice, UsageRecord, utcnow
from .pricing import TOKEN_CLASSES, Usage, exact_cost, quote


@dataclass(frozen=True)
class Filters:
    key_id: Optional[int] = None
    model_id: Optional[int] = None
    start: Optional[date] = None
    end: Optional[date] = None  # inclusive

    def apply(self, query: Select) -> Select:
        if self.key_id:
            query = query.where(UsageRecord.api_key_id == self.key_id)
        if self.model_id:
            query = query.where(UsageRecord.model_id == self.model_id)
        if self.start:
            query = query.where(UsageRecord.started_at >= _midnight(self.start))
        if self.end and self.end < date.max:  # the day after 9999-12-31 does not exist; no bound is the same
            query = query.where(UsageRecord.started_at < _midnight(self.end + timedelta(days=1)))
        return query


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _listing(account_id: int, filters: Filters) -> Select:
    return filters.apply(
        select(UsageRecord, ApiKey.name.label("key_name"), ApiKey.hint, CatalogModel.public_id)
        .join(ApiKey, ApiKey.id == UsageRecord.api_key_id).join(CatalogModel, CatalogModel.id == UsageRecord.model_id)
        .where(UsageRecord.account_id == account_id)
    ).order_by(UsageRecord.started_at.desc(), UsageRecord.id.desc())


def page(account_id: int, filters: Filters, number: int, size: int = 50) -> tuple[list, bool]:
    """One page of calls, newest first, and whether there is a next page."""
    rows = db.session.execute(_listing(account_id, filters).offset((number - 1) * size).limit(size + 1)).all()
    return rows[:size], len(rows) > size


def stream(account_id: int, filters: Filters) -> Iterator:
    """Every matching call, fetched in batches (for CSV export: never the whole set in memory)."""
    yield from db.session.execute(_listing(account_id, filters).execution_options(yield_per=500))


def recent(account_id: int, limit: int = 10) -> list:
    return page(account_id, Filters(), 1, limit)[0]


def daily_spend(account_id: int, days: int = 30) -> list[tuple[date, int]]:
    """Micro-dollars charged per UTC day, oldest first, including days with nothing."""
    today = utcnow().date()
    first = today - timedelta(days=days - 1)
    totals = {first + timedelta(days=i): 0 for i in range(days)}
    rows = db.session.execute(select(UsageRecord.started_at, UsageRecord.cost)
                              .where(UsageRecord.account_id == account_id,
                                     UsageRecord.started_at >= _midnight(first)))
    for started_at, cost in rows:
        day = started_at.astimezone(timezone.utc).date()
        if day in totals:
            totals[day] += cost
    return sorted(totals.items())


@dataclass(frozen=True)
class Receipt:
    record: UsageRecord
    model_id: str
    key_name: str
    key_hint: str
    price: ModelPrice
    lines: list  # (class, tokens, micro-USD per million, tokens x price)
    exact: int   # sum of the lines, in millionths of a micro-dollar
    recomputed: int
    entry: Optional[LedgerEntry]


def receipt(account_id: int, request_id: str) -> Optional[Receipt]:
    row = db.session.execute(
        select(UsageRecord, CatalogModel.public_id, ApiKey.name, ApiKey.hint, ModelPrice)
        .join(CatalogModel, CatalogModel.id == UsageRecord.model_id).join(ApiKey, ApiKey.id == UsageRecord.api_key_id)
        .join(ModelPrice, ModelPrice.id == UsageRecord.price_id)
        .where(UsageRecord.account_id == account_id, UsageRecord.request_id == request_id)
    ).first()
    if row is None:
        return None
    record, public_id, key_name, hint, price_row = row
    price = as_price(price_row)
    usage = Usage(input=record.input_tokens, output=record.output_tokens, cache_read=record.cache_read_tokens,
                  cache_write=record.cache_write_tokens)
    per_class = price.per_class()
    lines = [(name, getattr(usage, name), per_class[name], getattr(usage, name) * per_class[name])
             for name in TOKEN_CLASSES]
    entry = db.session.get(LedgerEntry, record.ledger_entry_id) if record.ledger_entry_id else None
    charged = quote(price, usage) if record.ledger_entry_id else 0
    return Receipt(record, public_id, key_name, hint, price_row, lines, exact_cost(price, usage), charged, entry)
