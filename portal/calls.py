"""A proxied call's money: hold its worst case before forwarding, then settle and record it once.

Two short transactions per call and none while the upstream works, so no database connection
or lock is held for the length of a generation.
"""
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Iterable, Mapping, Optional

from flask import current_app
from sqlalchemy import select

from . import apikeys, autotopup, database, ledger, logs, metrics, notices, prepared, signals
from .catalog import ServingModel
from .database import writing
from .extensions import db
from .errors import HoldNotOpen
from .models import UsageRecord, utcnow
from .pricing import INPUT_SIDE, OUTPUT_SIDE, Price, Usage, breakdown, ceiling, is_long_context, quote

log = logging.getLogger(__name__)
_INSERT_RECORD = UsageRecord.__table__.insert()  # Core, built once: this runs for every call


@dataclass(frozen=True)
class Bounds:
    """The most a request can produce: input tokens (the input-side classes together), output tokens
    (the output-side classes together), and uses of each fee unit (None: units not bounded)."""

    input: int
    output: int
    units: Optional[Mapping[str, int]] = None


@dataclass(frozen=True)
class OpenCall:
    """A call whose hold is placed: the ids and the price it will be settled with, nothing secret."""

    request_id: str
    account_id: int
    api_key_id: int
    model_id: int
    public_id: str
    upstream_id: int
    price_id: int
    price: Price
    hold_id: int
    hold_amount: int
    # What the hold was priced on, at its dearest tier: charged when a success cannot be metered.
    worst_case: Usage
    bounds: Bounds      # reported usage above these is not believed
    client_ip: Optional[str]
    route: str
    streamed: bool
    started_at: datetime
    # What the operator pays upstream, taken with the hold like the price (None: not known).
    cost_price: Optional[Price] = None
    # Each upstream tried before the one whose answer settles the call (proxy/pipeline.py replaces
    # upstream_id with that one): [{"upstream": name, "result": "status_503", "ms": 12}, ...].
    attempts: tuple = ()


@dataclass(frozen=True)
class Outcome:
    """How a call ended. `usage` None means nothing reached the client: nothing is charged."""

    status: str
    usage: Optional[Usage] = None
    estimated: bool = False
    http_status: Optional[int] = None
    error: Optional[str] = None
    first_byte_ms: Optional[int] = None
    duration_ms: Optional[int] = None


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def hold_amount(price: Price, worst_case: Usage, tiers: Iterable[Optional[str]] = (None,)) -> int:
    """What a call must hold: the most `worst_case` could cost at any of `tiers` (every input token
    at the dearest input-side rate, every output token at the dearest output-side rate, each fee
    unit at its limit, the long-context rates too when its input crosses the threshold), and at
    least one micro-dollar, so a balance at or below zero stops every call."""
    return max(1, ceiling(price, input_tokens=worst_case.input_side, output_tokens=worst_case.output_side,
                          units=worst_case.units, long_context=is_long_context(price, worst_case.input_side),
                          tiers=tiers))


def _dearest_tier(price: Price, usage: Usage, tiers: Iterable[Optional[str]]) -> Optional[str]:
    costs = [(quote(price, replace(usage, service_tier=tier)), tier) for tier in tiers]
    return max(costs, key=lambda pair: pair[0])[1] if costs else None


def open_call(request_id: str, caller: apikeys.Caller, model: ServingModel, worst_case: Usage, bounds: Bounds, *,
              client_ip: Optional[str], route: str, streamed: bool,
              tiers: Iterable[Optional[str]] = (None,)) -> OpenCall:
    """Hold the call's worst case, at the dearest of the service `tiers` it could be served at,
    against the key's caps and the balance.

    Raises SpendCapReached or InsufficientFunds, changing nothing.
    """
    tiers = tuple(tiers)
    amount = hold_amount(model.price, worst_case, tiers)
    worst_case = replace(worst_case, service_tier=_dearest_tier(model.price, worst_case, tiers))
    with writing():
        apikeys.reserve(caller.key_id, amount, client_ip)
        hold_id = ledger.hold(caller.account_id, amount, memo=request_id, api_key_id=caller.key_id,
                              call_details={"model": model.id, "upstream": model.upstream.id, "price": model.price_id,
                                            "route": route, "streamed": streamed})
    db.session.close()  # give the connection back to the pool while the upstream works
    logs.set_request_id(None, request_id)  # this request's log lines and access line carry the call's id
    # Key sharing (signals.py): a query only for an address this process has not noted today.
    signals.note_call(current_app._get_current_object(), caller.key_id, client_ip)
    return OpenCall(request_id, caller.account_id, caller.key_id, model.id, model.public_id, model.upstream.id,
                    model.price_id, model.price, hold_id, amount, worst_case, bounds, client_ip, route, streamed,
                    utcnow(), model.cost_price)


# The order the input-side classes take their share of the input bound, and the output-side ones of
# the output bound, when the upstream reports more than the request allowed (docs/billing.md, "Bounds").
CLAMP_INPUT_ORDER = ("input", "input_audio", "cache_write_5m", "cache_write_1h", "cache_read")
CLAMP_OUTPUT_ORDER = ("output", "reasoning", "output_audio")
assert sorted(CLAMP_INPUT_ORDER) == sorted(INPUT_SIDE) and sorted(CLAMP_OUTPUT_ORDER) == sorted(OUTPUT_SIDE)


def _shared(usage: Usage, order: tuple, room: int) -> dict[str, int]:
    taken = {}
    for name in order:
        taken[name] = min(getattr(usage, name), room)
        room -= taken[name]
    return taken


def clamp(usage: Usage, bounds: Bounds) -> Usage:
    """Usage cut to what the request allowed: the input-side classes share the input bound and the
    output-side classes the output bound (each taken in the CLAMP_*_ORDER), and each fee unit is
    cut to its limit. The tier and the meter's notes are kept."""
    units = dict(usage.units) if bounds.units is None else \
        {name: min(count, bounds.units.get(name, 0)) for name, count in usage.units.items()}
    return replace(usage, **_shared(usage, CLAMP_INPUT_ORDER, bounds.input),
                   **_shared(usage, CLAMP_OUTPUT_ORDER, bounds.output), units={n: c for n, c in units.items() if c})


def flags(priced) -> list[str]:
    """What the operator should look at in a charge: unpriced classes, units and tiers, and the
    meter's notes on how it read the usage."""
    return ([f"unpriced class: {name}" for name in priced.unpriced]
            + [f"unpriced unit: {name}" for name in priced.unpriced_units]
            + ([f"unpriced tier: {priced.tier_unpriced}"] if priced.tier_unpriced else []))


def close_call(call: OpenCall, outcome: Outcome) -> int:
    """Settle (or release) the hold and write the call's one usage record; return the cost charged."""
    usage = outcome.usage
    clamped = False
    if usage is not None:
        bounded = clamp(usage, call.bounds)
        if bounded != usage:
            clamped = True
            log.warning("call %s: the upstream reported %s, more than the request allowed (%s); charged %s",
                        call.request_id, usage, call.bounds, bounded)
            usage = bounded
    priced = None if usage is None else breakdown(call.price, usage)
    cost = 0 if priced is None else priced.cost
    # The operator's cost of the same usage by the same rule; None when the model has no cost price.
    upstream_cost = None if call.cost_price is None else quote(call.cost_price, usage or Usage())
    noted = [] if priced is None else flags(priced) + list(usage.notes)
    if noted:
        log.warning("call %s (%s): %s", call.request_id, call.public_id, "; ".join(noted))
    low_balance = auto_topup_due = False
    with writing():
        # Rows are locked in the same order as open_call (key, then account): concurrent calls on
        # one key never wait for each other in a cycle (Postgres would abort one as a deadlock).
        apikeys.settle_spend(call.api_key_id, call.hold_amount, cost)
        if usage is None:
            ledger.release(call.hold_id)
            entry_id = None
        else:
            entry = ledger.settle(call.hold_id, cost, memo=f"{call.public_id} {call.request_id}")
            entry_id, low_balance, auto_topup_due = entry.id, entry.low_balance, entry.auto_topup_due
        used = usage or Usage()
        prepared.run(database.connection(), _INSERT_RECORD, dict(
            request_id=call.request_id, account_id=call.account_id, api_key_id=call.api_key_id,
            model_id=call.model_id, upstream_id=call.upstream_id, price_id=call.price_id,
            hold_id=call.hold_id, hold_amount=call.hold_amount, ledger_entry_id=entry_id,
            input_tokens=used.input, output_tokens=used.output, cache_read_tokens=used.cache_read,
            cache_write_5m_tokens=used.cache_write_5m, cache_write_1h_tokens=used.cache_write_1h,
            input_audio_tokens=used.input_audio, output_audio_tokens=used.output_audio,
            reasoning_tokens=used.reasoning, units=dict(used.units) or None, service_tier=used.service_tier,
            long_context=bool(priced and priced.long_context), flags=noted or None,
            cost=cost, upstream_cost=upstream_cost, status=outcome.status,
            usage_estimated=outcome.estimated, usage_clamped=clamped, http_status=outcome.http_status, error=outcome.error,
            client_ip=call.client_ip, route=call.route, streamed=call.streamed, started_at=call.started_at,
            first_byte_ms=outcome.first_byte_ms, duration_ms=outcome.duration_ms,
            attempts=[dict(attempt) for attempt in call.attempts] or None,
        ))
    db.session.close()
    metrics.charged(call.public_id, cost)  # after the commit: a rolled-back settlement charged nothing
    if low_balance:
        # This charge was the one that crossed the owner's threshold (the ledger says so once).
        # The mail goes from a background thread: the client's response never waits for SMTP.
        notices.later(current_app._get_current_object(), partial(notices.send_low_balance, call.account_id))
    if auto_topup_due:
        # The attempt itself re-checks every rule under its own conditional UPDATE.
        autotopup.after_charge(current_app._get_current_object(), call.account_id)
    return cost


ABANDONED = "abandoned"  # the usage record's status of a call whose process never settled it


def release_stale(older_than: datetime) -> list[int]:
    """Release holds left open by calls that never finished (a crashed or killed process), and
    write each call's usage record with status `abandoned`.

    Nothing is charged for them. A call still running when its hold is released is not charged
    either (its settlement finds the hold closed), so `older_than` must exceed the longest call.
    """
    released = []
    for hold_id, api_key_id, amount in ledger.stale_holds(older_than):
        try:
            with database.atomic():
                if api_key_id is not None:
                    apikeys.settle_spend(api_key_id, amount, 0)
                ledger.release(hold_id)
                _record_abandoned(hold_id)
        except HoldNotOpen:
            continue  # the call finished while we looked
        released.append(hold_id)
        log.warning("released stale hold %s (%s micro-dollars): its call never settled", hold_id, amount)
    return released


def _record_abandoned(hold_id: int) -> None:
    """The usage record of the released hold's call, from what the hold noted when it was placed.

    Holds placed before that note existed (or by other code than open_call) get none.
    """
    from .models import Hold

    hold = db.session.execute(select(Hold.account_id, Hold.api_key_id, Hold.amount, Hold.memo, Hold.created_at,
                                     Hold.call_details).where(Hold.id == hold_id)).one()
    details = hold.call_details or {}
    if hold.api_key_id is None or not all(details.get(name) for name in ("model", "upstream", "price")):
        return
    db.session.connection().execute(_INSERT_RECORD, dict(
        request_id=hold.memo, account_id=hold.account_id, api_key_id=hold.api_key_id,
        model_id=details["model"], upstream_id=details["upstream"], price_id=details["price"],
        hold_id=hold_id, hold_amount=hold.amount, ledger_entry_id=None, input_tokens=0, output_tokens=0,
        cache_read_tokens=0, cache_write_5m_tokens=0, cache_write_1h_tokens=0, input_audio_tokens=0,
        output_audio_tokens=0, reasoning_tokens=0, units=None, service_tier=None, long_context=False, flags=None,
        cost=0, upstream_cost=None, status=ABANDONED, usage_estimated=False, usage_clamped=False, http_status=None,
        error="the call never finished (its serving process stopped); its hold was released and nothing charged",
        client_ip=None, route=details.get("route") or "", streamed=bool(details.get("streamed")),
        started_at=hold.created_at, first_byte_ms=None, duration_ms=None,
    ))
