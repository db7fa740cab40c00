"""Reading usage records: lists, filters, totals, spend per model and key, daily spend, receipts.

Never writes. Totals and groupings are summed by the database over the whole filtered set (not
the page shown), as integers: Postgres sums BIGINT into NUMERIC, so every sum is cast back.
"""
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterator, Optional

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import BigInteger, Select, cast, func, select

from .catalog import as_price
from .extensions import db
from .models import ApiKey, LedgerEntry, CatalogModel, ModelPrice, UsageRecord, utcnow
from .money import MICRO, format_usd
from .pricing import TOKEN_CLASSES, TOKENS_PER_PRICE_UNIT, Breakdown, Line, Price, Usage, breakdown, usd_text


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


def _sum(column):
    """SUM as an integer on every backend (0 for no rows)."""
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


def _token_column(name: str):
    return getattr(UsageRecord, f"{name}_tokens")


@dataclass(frozen=True)
class Totals:
    """The whole filtered set of calls: how many, the tokens of each class, the micro-dollars charged."""

    calls: int = 0
    cost: int = 0
    tokens: dict = field(default_factory=dict)  # every class of pricing.TOKEN_CLASSES, in that order

    def shown(self, always=("input", "output", "cache_read", "cache_write_5m")) -> list[tuple[str, int]]:
        """The classes worth a figure: the common four, and any other the calls used."""
        return [(name, n) for name, n in self.tokens.items() if name in always or n]


def totals(account_id: int, filters: Filters) -> Totals:
    """Calls, tokens per class and cost of every call matching `filters` (all pages), summed in SQL."""
    query = filters.apply(
        select(func.count(UsageRecord.id), _sum(UsageRecord.cost), *(_sum(_token_column(n)) for n in TOKEN_CLASSES))
        .where(UsageRecord.account_id == account_id))
    calls, cost, *tokens = db.session.execute(query).one()
    return Totals(int(calls), int(cost), {name: int(n) for name, n in zip(TOKEN_CLASSES, tokens)})


@dataclass(frozen=True)
class Spend:
    """One group's share of the filtered calls (a model, or a key)."""

    name: str
    cost: int
    calls: int


def spend_by(account_id: int, filters: Filters, by: str) -> list[Spend]:
    """Cost and calls of the filtered set per model (`by="model"`) or per key (`by="key"`), most first."""
    if by == "model":
        name, join = CatalogModel.public_id, (CatalogModel, CatalogModel.id == UsageRecord.model_id)
        group = (CatalogModel.id, CatalogModel.public_id)
    elif by == "key":
        # Two keys may share a name; the hint (its last characters) tells them apart.
        name, join = ApiKey.name + " (" + ApiKey.hint + ")", (ApiKey, ApiKey.id == UsageRecord.api_key_id)
        group = (ApiKey.id, ApiKey.name, ApiKey.hint)
    else:
        raise ValueError(f"spend_by: by must be 'model' or 'key', not {by!r}")
    cost, calls = _sum(UsageRecord.cost), func.count(UsageRecord.id)
    query = filters.apply(select(name, cost, calls).join(*join).where(UsageRecord.account_id == account_id))
    rows = db.session.execute(query.group_by(*group).order_by(cost.desc(), name)).all()
    return [Spend(label, int(c), int(n)) for label, c, n in rows]


def has_calls(account_id: int) -> bool:
    """Whether the account ever made a call (the dashboard's first-day guidance until it has)."""
    return db.session.execute(select(UsageRecord.id).where(UsageRecord.account_id == account_id).limit(1)).first() \
        is not None


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


CLASS_LABELS = {"input": _l("Input"), "output": _l("Output"), "cache_read": _l("Cache read"),
                "cache_write_5m": _l("Cache write (5 minutes)"), "cache_write_1h": _l("Cache write (1 hour)"),
                "input_audio": _l("Input audio"), "output_audio": _l("Output audio"), "reasoning": _l("Reasoning"),
                # Fee units the catalogue knows; others read as their name.
                "web_search": _l("Web search"), "file_search": _l("File search")}
# A call's outcome (calls.Outcome.status, proxy.relay), in words; an unknown one reads as its name.
STATUS_LABELS = {"ok": _l("ok"), "client_disconnected": _l("you disconnected"),
                 "gateway_error": _l("gateway error"), "unavailable": _l("unavailable"),
                 "upstream_error": _l("upstream error"), "upstream_timeout": _l("upstream timeout"),
                 "upstream_truncated": _l("upstream cut short"), "upstream_failed": _l("upstream failed"),
                 "abandoned": _l("abandoned")}
_PER_USD = MICRO * TOKENS_PER_PRICE_UNIT  # exact amounts are millionths of a micro-dollar


def label(name: str) -> str:
    """A token class or fee unit as people read it: "cache_write_1h" -> "Cache write (1 hour)"."""
    known = CLASS_LABELS.get(name)
    return str(known) if known is not None else name.replace("_", " ").capitalize()


def status_label(status: str) -> str:
    """A call's status as people read it: "upstream_timeout" -> "upstream timeout"."""
    known = STATUS_LABELS.get(status)
    return str(known) if known is not None else status.replace("_", " ")


def usd_exact(millionths: int) -> str:
    """An exact amount (millionths of a micro-dollar) as dollars, every digit kept: "$0.0000003"."""
    whole, frac = divmod(millionths, _PER_USD)
    return f"${whole:,}.{f'{frac:012d}'.rstrip('0').ljust(2, '0')}"


def usage_of(record: UsageRecord) -> Usage:
    """The usage a call was charged for, rebuilt from its record: every class, the fee units, the tier."""
    return Usage(input=record.input_tokens, output=record.output_tokens, cache_read=record.cache_read_tokens,
                 cache_write_5m=record.cache_write_5m_tokens, cache_write_1h=record.cache_write_1h_tokens,
                 input_audio=record.input_audio_tokens, output_audio=record.output_audio_tokens,
                 reasoning=record.reasoning_tokens, units={name: int(n) for name, n in (record.units or {}).items()},
                 service_tier=record.service_tier)


@dataclass(frozen=True)
class Flag:
    code: str     # estimated, clamped, unpriced_class, unpriced_unit, unpriced_tier, metering, mismatch
    message: str  # a sentence for the caller


@dataclass(frozen=True)
class Receipt:
    """One call's charge with its arithmetic, recomputed from the record and the price it was settled at."""

    record: UsageRecord
    model_id: str
    key_name: str
    key_hint: str
    price_row: ModelPrice
    price: Price
    usage: Usage
    arithmetic: Breakdown
    entry: Optional[LedgerEntry]

    @property
    def charged(self) -> bool:
        return self.record.ledger_entry_id is not None

    @property
    def recomputed(self) -> int:
        """What the recorded usage costs at the recorded price; nothing for a call that was not charged."""
        return self.arithmetic.cost if self.charged else 0

    @property
    def consistent(self) -> bool:
        return self.recomputed == self.record.cost

    @property
    def token_lines(self) -> list[Line]:
        """The token classes the call used (the JSON lists all of them)."""
        return [line for line in self.arithmetic.tokens if line.quantity]

    @property
    def fee_lines(self) -> list[Line]:
        return self.arithmetic.fees

    @property
    def flags(self) -> list[Flag]:
        record, b = self.record, self.arithmetic
        flags = []
        if record.usage_estimated:
            if record.status != "ok":
                message = _("Estimated: the upstream did not report this call's usage (the stream ended before "
                            "it); the tokens are the gateway's estimate.")
            else:
                message = _("Estimated: the upstream did not report this call's usage (it was missing from the "
                            "response); the tokens are the gateway's estimate.")
            flags.append(Flag("estimated", message))
        if record.usage_clamped:
            flags.append(Flag("clamped", _("Capped: the upstream reported more tokens than this request allowed; "
                                           "only what the request could use was charged.")))
        rates = {line.name: line.rate for line in b.tokens}
        for name in b.unpriced:
            flags.append(Flag("unpriced_class", _(
                "%(class)s tokens have no price of their own for this model: they were charged at its highest "
                "input-side price, %(rate)s per million.", **{"class": label(name), "rate": format_usd(rates[name])})))
        for name in b.unpriced_units:
            flags.append(Flag("unpriced_unit", _("%(unit)s (%(count)s) has no price for this model and was not "
                                                 "charged.", unit=label(name), count="{:,}".format(self.usage.units[name]))))
        if b.tier_unpriced:
            flags.append(Flag("unpriced_tier", _("The upstream served this call on the %(tier)s tier, which this "
                                                 "model has no prices for: the base prices applied.",
                                                 tier=repr(b.tier_unpriced))))
        # The record's own "unpriced ..." flags (calls.flags) are the ones said in words above.
        for note in record.flags or []:
            if not str(note).startswith("unpriced "):
                flags.append(Flag("metering", _("Metering: %(note)s", note=note)))
        if not self.consistent:
            flags.append(Flag("mismatch", _("The prices give %(recomputed)s micro-dollars for this usage, but "
                                            "%(charged)s were charged. Please tell the operator, quoting %(id)s.",
                                            recomputed="{:,}".format(self.recomputed), charged="{:,}".format(record.cost),
                                            id=record.request_id)))
        return flags


def receipt(account_id: int, request_id: str) -> Optional[Receipt]:
    """The receipt of the account's call `request_id`, or None (unknown, or another account's)."""
    row = db.session.execute(
        select(UsageRecord, CatalogModel.public_id, ApiKey.name, ApiKey.hint, ModelPrice)
        .join(CatalogModel, CatalogModel.id == UsageRecord.model_id).join(ApiKey, ApiKey.id == UsageRecord.api_key_id)
        .join(ModelPrice, ModelPrice.id == UsageRecord.price_id)
        .where(UsageRecord.account_id == account_id, UsageRecord.request_id == request_id)
    ).first()
    if row is None:
        return None
    record, public_id, key_name, hint, price_row = row
    price, usage = as_price(price_row), usage_of(record)
    entry = db.session.get(LedgerEntry, record.ledger_entry_id) if record.ledger_entry_id else None
    return Receipt(record, public_id, key_name, hint, price_row, price, usage, breakdown(price, usage), entry)


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _line(kind: str, line: Line) -> dict:
    return {kind: line.name, "quantity": line.quantity, "rate_micro_usd": line.rate,
            "amount_millionths": line.exact, "note": line.note}


def as_json(r: Receipt) -> dict:
    """The receipt as GET /v1/generations/{id} returns it (docs/billing.md, "Receipts")."""
    record, b = r.record, r.arithmetic
    entry = None if r.entry is None else {
        "id": r.entry.id, "hash": r.entry.entry_hash, "amount_micro_usd": r.entry.amount,
        "balance_after_micro_usd": r.entry.balance_after, "created": _unix(r.entry.created_at)}
    return {
        "id": record.request_id, "object": "generation", "model": r.model_id, "created": _unix(record.started_at),
        "status": record.status, "http_status": record.http_status, "streamed": record.streamed,
        "route": record.route, "tokens": r.usage.tokens(), "units": dict(sorted(r.usage.units.items())),
        "service_tier": record.service_tier, "long_context": b.long_context,
        "prices": {"id": r.price_row.id, "since": _unix(r.price_row.effective_at), "service_tier": b.tier,
                   "long_context_above_input_tokens": r.price.long_context_above,
                   "usd_per_million": {line.name: usd_text(line.rate) for line in b.tokens},
                   "usd_per_thousand": {name: usd_text(rate) for name, rate in sorted(r.price.fees.items())}},
        "lines": [_line("class", line) for line in b.tokens] + [_line("unit", line) for line in b.fees],
        "exact_millionths_micro_usd": b.exact,
        "charge_micro_usd": record.cost, "charge_usd": usd_text(record.cost),
        "estimated": record.usage_estimated, "clamped": record.usage_clamped,
        "flags": [{"code": f.code, "message": f.message} for f in r.flags],
        "ledger_entry": entry, "hold_micro_usd": record.hold_amount,
        # How each upstream attempt ended, and the API a translated one was carried in (not which
        # upstream: that is the operator's business).
        "attempts": [{key: attempt[key] for key in ("result", "translated_to") if key in attempt}
                     for attempt in record.attempts or ()],
    }


@dataclass(frozen=True)
class FlaggedCalls:
    model_id: str
    flag: str
    calls: int
    last: datetime


def flagged(since: datetime) -> list[FlaggedCalls]:
    """Calls since `since` that were flagged for the operator (unpriced classes, units or tiers, the
    meter's notes), counted per model and flag, most frequent first."""
    counts: dict[tuple[str, str], list] = {}
    rows = db.session.execute(
        select(CatalogModel.public_id, UsageRecord.flags, UsageRecord.started_at)
        .join(CatalogModel, CatalogModel.id == UsageRecord.model_id)
        .where(UsageRecord.started_at >= since).execution_options(yield_per=1000))
    for public_id, flags, started_at in rows:
        for flag in flags or ():  # JSON null and SQL NULL both read as None
            seen = counts.setdefault((public_id, flag), [0, started_at])
            seen[0] += 1
            seen[1] = max(seen[1], started_at)
    return sorted((FlaggedCalls(model, flag, n, last) for (model, flag), (n, last) in counts.items()),
                  key=lambda f: (-f.calls, f.model_id, f.flag))
