"""A proxied call's money: hold its worst case before forwarding, then settle and record it once.

Two short transactions per call and none while the upstream works, so no database connection
or lock is held for the length of a generation.
"""
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from . import apikeys, ledger
from .catalog import ServingModel
from .database import atomic
from .extensions import db
from .errors import HoldNotOpen
from .models import UsageRecord, utcnow
from .pricing import Usage, quote


_INSERT_RECORD = UsageRecord.__table__.insert()  # Core, built once: this runs for every call


@dataclass(frozen=True)
class OpenCall:
    request_id: str
    account_id: int
    api_key_id: int
    model: ServingModel
    hold_id: int
    hold_amount: int
    client_ip: Optional[str]
    route: str
    streamed: bool
    started_at: datetime


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


def open_call(request_id: str, caller: apikeys.Caller, model: ServingModel, hold_amount: int, *,
              client_ip: Optional[str], route: str, streamed: bool) -> OpenCall:
    """Reserve `hold_amount` for the call against the key's caps and the balance.

    Raises SpendCapReached or InsufficientFunds, changing nothing.
    """
    with atomic():
        apikeys.reserve(caller.key_id, hold_amount, client_ip)
        hold_id = ledger.hold(caller.account_id, hold_amount, memo=request_id, api_key_id=caller.key_id)
    db.session.close()  # give the connection back to the pool while the upstream works
    return OpenCall(request_id, caller.account_id, caller.key_id, model, hold_id, hold_amount, client_ip,
                    route, streamed, utcnow())


def close_call(call: OpenCall, outcome: Outcome) -> int:
    """Settle (or release) the hold and write the call's one usage record; return the cost charged."""
    usage = outcome.usage
    cost = 0 if usage is None else quote(call.model.price, usage)
    with atomic():
        # Rows are locked in the same order as open_call (key, then account): concurrent calls on
        # one key never wait for each other in a cycle (Postgres would abort one as a deadlock).
        apikeys.settle_spend(call.api_key_id, call.hold_amount, cost)
        if usage is None:
            ledger.release(call.hold_id)
            entry_id = None
        else:
            entry_id = ledger.settle(call.hold_id, cost, memo=f"{call.model.public_id} {call.request_id}").id
        usage = usage or Usage()
        db.session.connection().execute(_INSERT_RECORD, dict(
            request_id=call.request_id, account_id=call.account_id, api_key_id=call.api_key_id,
            model_id=call.model.id, upstream_id=call.model.upstream.id, price_id=call.model.price_id,
            hold_id=call.hold_id, hold_amount=call.hold_amount, ledger_entry_id=entry_id,
            input_tokens=usage.input, output_tokens=usage.output, cache_read_tokens=usage.cache_read,
            cache_write_tokens=usage.cache_write, cost=cost, status=outcome.status,
            usage_estimated=outcome.estimated, http_status=outcome.http_status, error=outcome.error,
            client_ip=call.client_ip, route=call.route, streamed=call.streamed, started_at=call.started_at,
            first_byte_ms=outcome.first_byte_ms, duration_ms=outcome.duration_ms,
        ))
    db.session.close()
    return cost


def release_stale(older_than: datetime) -> list[int]:
    """Release holds left open by calls that never finished (a crashed or killed process).

    Nothing is charged for them. A call still running when its hold is released is not charged
    either (its settlement finds the hold closed), so `older_than` must exceed the longest call.
    """
    released = []
    for hold_id, api_key_id, amount in ledger.stale_holds(older_than):
        try:
            with atomic():
                if api_key_id is not None:
                    apikeys.settle_spend(api_key_id, amount, 0)
                ledger.release(hold_id)
        except HoldNotOpen:
            continue  # the call finished while we looked
        released.append(hold_id)
    return released
