"""A proxied call's money without HTTP: the hold's price, the bounds, settle or release, one record."""
import logging

import pytest
from sqlalchemy import select

from portal import apikeys, calls, catalog, ledger
from portal.database import atomic
from portal.errors import HoldNotOpen, InsufficientFunds, SpendCapReached
from portal.extensions import db
from portal.models import Account, ApiKey, Hold, LedgerEntry, UsageRecord
from portal.pricing import Price, Usage
from tests.factories import make_user

# per token: 1, 2, 0.5, 1.25
PRICE = Price(input=1_000_000, output=2_000_000, cache_read=500_000, cache_write_5m=1_250_000)
M = 1_000_000
# Every class priced apart, a fee, long context above 1,000 input-side tokens, two service tiers.
RICH = Price(input=1 * M, output=4 * M, cache_read=M // 2, cache_write_5m=2 * M, cache_write_1h=3 * M,
             input_audio=5 * M, output_audio=6 * M, reasoning=4 * M, fees={"web_search": 10 * M},
             long_context_above=1_000, long_context={"input": 7 * M, "output": 9 * M},
             service_tiers={"priority": {"input": 8 * M, "output": 10 * M}, "flex": {"input": M // 2}})


@pytest.fixture
def caller(app):
    user = make_user(credit=100_000)
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("m", "echo", PRICE)
        _, plaintext = apikeys.issue(user, "k")
    return apikeys.authenticate(plaintext)


def open_call(caller, worst=Usage(input=100, output=100), bounds=calls.Bounds(1_000, 100)):
    return calls.open_call(calls.new_request_id(), caller, catalog.serving_model("m"), worst, bounds,
                           client_ip="203.0.113.9", route="chat", streamed=False)


def account(caller) -> Account:
    db.session.rollback()
    return db.session.get(Account, caller.account_id)


def test_the_hold_is_the_priced_worst_case_and_at_least_one(caller):
    # Input at the dearest input-side rate (cache writes, 1.25), output at the dearest output-side one (2).
    assert calls.hold_amount(PRICE, Usage(input=100, output=100)) == 325
    assert calls.hold_amount(PRICE, Usage()) == 1
    assert calls.hold_amount(Price(input=0, output=0), Usage(input=10**9)) == 1
    call = open_call(caller)
    assert (call.hold_amount, account(caller).held) == (325, 325)
    assert db.session.scalar(select(ApiKey.held)) == 325
    assert call.price == PRICE and not hasattr(call, "model")  # ids and the price: no upstream credential


@pytest.mark.parametrize("worst, tiers, expected", [
    # base rates: input side at input audio's 5, output side at output audio's 6
    (Usage(input=1_000, output=100), (None,), 1_000 * 5 + 100 * 6),
    # one token more crosses the threshold: the long-context rates (input 7, output 9) may apply
    (Usage(input=1_001, output=100), (None,), 1_001 * 7 + 100 * 9),
    # pinned priority: its input 8 and output 10 are the dearest
    (Usage(input=1_000, output=100), ("priority",), 1_000 * 8 + 100 * 10),
    # "auto": the dearest of the base and every priced tier
    (Usage(input=1_000, output=100), (None, "flex", "priority"), 1_000 * 8 + 100 * 10),
    # pinned flex: its own input rate is lower, but the input side's dearest class is still 5
    (Usage(input=1_000, output=100), ("flex",), 1_000 * 5 + 100 * 6),
    # fees at their limit: 20 searches at $10 per thousand
    (Usage(input=1_000, output=100, units={"web_search": 20}), (None,), 1_000 * 5 + 100 * 6 + 20 * 10_000),
    # a unit without a fee holds nothing
    (Usage(output=100, units={"web_fetch": 20}), (None,), 100 * 6),
])
def test_the_hold_covers_every_rate_the_call_could_be_charged_at(worst, tiers, expected):
    assert calls.hold_amount(RICH, worst, tiers) == expected


def rich_caller(credit=10_000_000):
    user = make_user("rich@example.com", credit=credit)
    with atomic():
        catalog.add_upstream("echo-rich", "echo")
        catalog.set_model("rich", "echo-rich", RICH)
        _, plaintext = apikeys.issue(user, "k")
    return apikeys.authenticate(plaintext)


def open_rich(caller, worst=Usage(input=100, output=100), bounds=calls.Bounds(10_000, 10_000), tiers=(None,)):
    return calls.open_call(calls.new_request_id(), caller, catalog.serving_model("rich"), worst, bounds,
                           client_ip=None, route="chat", streamed=False, tiers=tiers)


def test_an_unmeterable_call_is_charged_its_worst_case_at_the_dearest_tier(app):
    caller = rich_caller()
    call = open_rich(caller, tiers=(None, "flex", "priority"))
    assert call.hold_amount == 100 * 8 + 100 * 10
    assert call.worst_case == Usage(input=100, output=100, service_tier="priority")
    assert calls.close_call(call, calls.Outcome("ok", call.worst_case, estimated=True)) == 100 * 8 + 100 * 10


def test_a_settled_call_charges_exactly_and_writes_one_record(caller):
    call = open_call(caller)
    assert calls.close_call(call, calls.Outcome("ok", Usage(input=40, output=30, cache_read=10))) == 105
    acct = account(caller)
    assert (acct.balance, acct.held) == (100_000 - 105, 0)
    [record] = db.session.scalars(select(UsageRecord)).all()
    assert (record.cost, record.input_tokens, record.output_tokens, record.usage_clamped) == (105, 40, 30, False)
    assert record.ledger_entry_id is not None and record.client_ip == "203.0.113.9"
    assert db.session.scalar(select(ApiKey.spent_total)) == 105
    assert ledger.verify() == []


def test_a_failed_call_releases_its_hold_instead_of_settling_it_at_zero(caller):
    call = open_call(caller)
    assert calls.close_call(call, calls.Outcome("upstream_error", None, http_status=500)) == 0
    hold = db.session.get(Hold, call.hold_id)
    assert hold.status == "released"
    assert db.session.scalars(select(LedgerEntry).where(LedgerEntry.hold_id == call.hold_id)).all() == []
    [record] = db.session.scalars(select(UsageRecord)).all()
    assert (record.cost, record.ledger_entry_id, record.status) == (0, None, "upstream_error")
    assert (account(caller).held, db.session.scalar(select(ApiKey.held))) == (0, 0)
    assert ledger.verify() == []


def test_a_zero_usage_success_is_settled_not_released(caller):
    call = open_call(caller)
    assert calls.close_call(call, calls.Outcome("ok", Usage())) == 0
    assert db.session.get(Hold, call.hold_id).status == "settled"


def test_usage_above_the_bounds_is_charged_at_the_bounds(caller):
    call = open_call(caller, bounds=calls.Bounds(input=50, output=20))
    cost = calls.close_call(call, calls.Outcome("ok", Usage(input=30, cache_write_5m=30, cache_read=30, output=99)))
    # input 30, then cache write up to the ceiling (20), cache read nothing; output 20.
    assert cost == 30 * 1 + 20 * 2 + 25  # 30 + 40 + 20 x 1.25
    [record] = db.session.scalars(select(UsageRecord)).all()
    assert (record.input_tokens, record.cache_write_5m_tokens, record.cache_read_tokens, record.output_tokens) == \
        (30, 20, 0, 20)
    assert record.usage_clamped and record.cost == cost
    assert db.session.scalar(select(ApiKey.spent_total)) == cost
    assert ledger.verify() == []


@pytest.mark.parametrize("usage, expected", [
    (Usage(input=50, output=20), Usage(input=50, output=20)),            # exactly at the bounds
    (Usage(input=51, output=20), Usage(input=50, output=20)),
    (Usage(input=10, output=21), Usage(input=10, output=20)),
    (Usage(cache_read=60), Usage(cache_read=50)),
    (Usage(input=20, cache_read=20, cache_write_5m=20), Usage(input=20, cache_write_5m=20, cache_read=10)),
    # the input side in its order: input, input audio, 5-minute writes, 1-hour writes, cache reads
    (Usage(input=10, input_audio=15, cache_write_5m=15, cache_write_1h=15, cache_read=15),
     Usage(input=10, input_audio=15, cache_write_5m=15, cache_write_1h=10)),
    (Usage(input_audio=70), Usage(input_audio=50)),
    (Usage(cache_write_1h=30, cache_read=30), Usage(cache_write_1h=30, cache_read=20)),
    # the output side shares the output bound: output, reasoning, output audio
    (Usage(output=5, reasoning=10, output_audio=10), Usage(output=5, reasoning=10, output_audio=5)),
    (Usage(reasoning=30), Usage(reasoning=20)),
    (Usage(output_audio=30), Usage(output_audio=20)),
    # fee units at what the request allowed; none for a tool it did not offer
    (Usage(units={"web_search": 7, "web_fetch": 2}), Usage(units={"web_search": 5, "web_fetch": 2})),
    (Usage(units={"file_search": 3}), Usage()),
    # the tier and the meter's notes stay
    (Usage(input=60, service_tier="priority", notes=("n",)), Usage(input=50, service_tier="priority", notes=("n",))),
])
def test_clamp(usage, expected):
    assert calls.clamp(usage, calls.Bounds(input=50, output=20, units={"web_search": 5, "web_fetch": 2})) == expected


def test_without_unit_bounds_units_are_not_clamped():
    usage = Usage(units={"web_search": 70})
    assert calls.clamp(usage, calls.Bounds(input=0, output=0)) == usage


def test_the_record_keeps_every_class_and_what_the_operator_should_see(app, caplog):
    caller = rich_caller()
    call = open_rich(caller, bounds=calls.Bounds(10_000, 10_000, units={"web_search": 5, "file_search": 5}))
    used = Usage(input=100, cache_read=200, cache_write_5m=300, cache_write_1h=400, input_audio=50,
                 output=60, reasoning=70, output_audio=80, units={"web_search": 3, "file_search": 2},
                 service_tier="scale", notes=("total_tokens guard: +70 tokens charged as reasoning",))
    with caplog.at_level(logging.WARNING, logger="portal.calls"):
        cost = calls.close_call(call, calls.Outcome("ok", used))
    # Long context (1,050 input-side tokens > 1,000): input 7, output 9; the "scale" tier has no
    # prices: base for the rest. file_search has no fee: charged nothing.
    # 100 x 7 + 200 x 0.5 + 300 x 2 + 400 x 3 + 50 x 5 + 60 x 9 + 70 x 4 + 80 x 6 = 4,150; 3 searches 30,000
    assert cost == 34_150
    [record] = db.session.scalars(select(UsageRecord)).all()
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_5m_tokens, record.cache_write_1h_tokens,
            record.input_audio_tokens, record.output_tokens, record.reasoning_tokens, record.output_audio_tokens) == \
        (100, 200, 300, 400, 50, 60, 70, 80)
    assert record.units == {"web_search": 3, "file_search": 2}
    assert (record.service_tier, record.long_context, record.cost) == ("scale", True, cost)
    assert record.flags == ["unpriced unit: file_search", "unpriced tier: scale",
                            "total_tokens guard: +70 tokens charged as reasoning"]
    [warning] = [r for r in caplog.records if call.request_id in r.getMessage()]
    assert "unpriced tier: scale" in warning.getMessage()
    assert ledger.verify() == []


def test_an_unpriced_class_is_flagged(caller, caplog):
    call = open_call(caller)
    with caplog.at_level(logging.WARNING, logger="portal.calls"):
        cost = calls.close_call(call, calls.Outcome("ok", Usage(input=10, input_audio=20)))
    assert cost == 10 * 1 + round(20 * 1.25)  # audio at the highest input-side price
    [record] = db.session.scalars(select(UsageRecord)).all()
    assert (record.flags, record.input_audio_tokens, record.long_context) == \
        (["unpriced class: input_audio"], 20, False)
    assert any("unpriced class: input_audio" in r.getMessage() for r in caplog.records)


def test_a_plain_call_has_no_flags_and_a_free_one_no_classes(caller):
    calls.close_call(open_call(caller), calls.Outcome("ok", Usage(input=10, output=5)))
    calls.close_call(open_call(caller), calls.Outcome("upstream_error", None, http_status=500))
    first, second = db.session.scalars(select(UsageRecord).order_by(UsageRecord.id)).all()
    assert (first.flags, first.units, first.service_tier) == (None, None, None)
    assert (second.flags, second.units, second.cost) == (None, None, 0)


def test_a_refused_hold_changes_nothing(caller):
    with pytest.raises(InsufficientFunds):
        open_call(caller, worst=Usage(output=60_000))  # 120,000 > 100,000
    assert (account(caller).held, db.session.scalar(select(ApiKey.held))) == (0, 0)
    assert db.session.scalars(select(Hold)).all() == []


def test_a_spend_cap_refusal_changes_nothing(caller):
    with atomic():
        apikeys.set_limits(db.session.scalar(select(ApiKey)), apikeys.Limits(spend_cap_monthly=299))
    with pytest.raises(SpendCapReached, match="cap for"):
        open_call(caller)
    assert account(caller).held == 0


def test_a_call_closes_once(caller):
    call = open_call(caller)
    calls.close_call(call, calls.Outcome("ok", Usage(input=1)))
    with pytest.raises(HoldNotOpen):
        calls.close_call(call, calls.Outcome("ok", Usage(input=1)))
    assert account(caller).balance == 100_000 - 1
    assert len(db.session.scalars(select(UsageRecord)).all()) == 1


@pytest.mark.books_broken
def test_verify_checks_each_keys_spend_counters(caller):
    call = open_call(caller)
    calls.close_call(call, calls.Outcome("ok", Usage(input=7)))
    assert ledger.verify() == []
    with atomic():  # a hold counted against the key's caps by the ledger alone: the key's `held` misses it
        ledger.hold(caller.account_id, 50, memo="stray", api_key_id=caller.key_id)
    assert ledger.verify() == [f"api key {caller.key_id}: held 0 != sum of its open holds 50"]
    with atomic():
        db.session.execute(ApiKey.__table__.update().values(held=50, spent_total=8))
    assert ledger.verify() == [f"api key {caller.key_id}: spent 8 != sum of its charges 7"]
