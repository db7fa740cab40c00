"""Price changes effective at a moment to come: what is "the current price", the proxy's model cache,
withdrawal, calls in flight across a change, and what users see before a change applies."""
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import apikeys, calls, catalog
from portal.audit import Actor
from portal.database import atomic
from portal.errors import InvalidInput
from portal.extensions import db
from portal.models import AuditEntry, ModelPrice, UsageRecord, utcnow
from portal.pricing import Price, Usage
from proxy import admission
from proxy.admission import ModelCache
from tests.factories import make_user
from tests.web.test_pricing_page import text_of

OLD = Price(input=2_000_000, output=8_000_000)
NEW = Price(input=3_000_000, output=12_000_000, cache_read=300_000)
ADMIN = Actor(label="admin@example.com", user_id=None, ip="203.0.113.7")


@pytest.fixture
def model(app):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("m", "echo", OLD)
    return catalog.find_model("m")


def later(**delta) -> datetime:
    return (utcnow() + timedelta(**delta)).replace(microsecond=0)


@pytest.fixture
def clock(monkeypatch):
    """Move "now" for the catalog and the proxy's cache (both read portal.models.utcnow)."""
    class Clock:
        def at(self, moment: datetime) -> None:
            for module in (catalog, admission):
                monkeypatch.setattr(module, "utcnow", lambda: moment)
    return Clock()


def plan(moment, price=NEW, public_id="m"):
    with atomic():
        return catalog.change_price(public_id, price, effective_at=moment, actor=ADMIN, reason="supplier rise")


def test_a_future_price_is_not_in_force_until_its_moment(model, clock):
    moment = later(days=3)
    row, created = plan(moment)
    assert created and row.effective_at == moment
    assert catalog.as_price(catalog.current_price(model.id)) == OLD
    assert catalog.serving_model("m").price == OLD and catalog.serving_model("m").price_until == moment
    assert [r.id for r in catalog.upcoming_prices(model.id)] == [row.id]
    clock.at(moment - timedelta(microseconds=1))
    assert catalog.serving_model("m").price == OLD
    clock.at(moment)  # at the moment itself the new price applies
    served = catalog.serving_model("m")
    assert (served.price, served.price_id, served.price_until) == (NEW, row.id, None)
    assert catalog.upcoming_prices(model.id) == []
    # The audit entry says who planned what, before and after, and from when.
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "model.price")).one()
    assert (entry.actor, entry.ip, entry.reason, entry.target_id) == ("admin@example.com", "203.0.113.7",
                                                                     "supplier rise", "m")
    assert entry.before == {"price input": "2", "price output": "8"}
    assert entry.after == {"price input": "3", "price output": "12", "price cache_read": "0.3",
                           "effective_at": moment.isoformat(), "price_id": row.id}


def test_the_same_price_at_that_moment_records_nothing_and_a_past_moment_is_refused(model):
    moment = later(hours=1)
    plan(moment)
    _, created = plan(moment)
    assert not created
    second = later(hours=2)
    _, created = plan(second)  # NEW is what is in force then already
    assert not created
    _, created = plan(second, OLD)  # back to the old price after the rise: a row
    assert created
    # Planned for the same moment again: the later one is what will apply, and all that is listed.
    third, created = plan(second, Price(input=1, output=1))
    assert created and catalog.upcoming_prices(model.id)[-1].id == third.id
    assert len(catalog.upcoming_prices(model.id)) == 2
    for moment, message in ((utcnow() - timedelta(minutes=1), "has passed"),
                            (datetime(2020, 1, 1), "with its timezone")):
        with pytest.raises(InvalidInput, match=message) as raised:
            plan(moment)
        assert raised.value.field == "effective_at"
    assert db.session.scalar(select(db.func.count()).select_from(ModelPrice)) == 4


def test_set_model_with_a_future_price_changes_settings_now_and_the_price_later(model, clock):
    moment = later(days=1)
    with atomic():
        _, changed = catalog.set_model("m", "echo", NEW, max_output_tokens=2048, effective_at=moment, actor=ADMIN)
    assert changed
    served = catalog.serving_model("m")
    assert (served.max_output_tokens, served.price) == (2048, OLD)
    clock.at(moment + timedelta(seconds=1))
    assert catalog.serving_model("m").price == NEW


def test_the_model_cache_never_serves_a_price_past_the_next_change(model, clock):
    cache = ModelCache(3600)  # an hour: only the change's moment can end the entry early
    moment = later(minutes=10)
    plan(moment)
    assert cache.get("m").price == OLD
    clock.at(moment - timedelta(seconds=1))
    assert cache.get("m").price == OLD
    clock.at(moment)
    assert cache.get("m").price == NEW
    assert cache.get("m").price_until is None


class Counting:
    def __init__(self):
        self.calls = 0

    def clear(self):
        self.calls += 1


def test_a_change_committed_in_this_process_clears_the_cache_at_once(model):
    cache = ModelCache(3600)
    catalog.on_change(cache.clear)
    counter = Counting()
    catalog.on_change(counter.clear)
    assert cache.get("m").price == OLD
    with atomic():
        catalog.change_price("m", NEW, actor=ADMIN)
        assert counter.calls == 0  # not before the commit: a rolled-back change must not show
    assert counter.calls == 1 and cache.get("m").price == NEW
    with pytest.raises(RuntimeError), atomic():
        catalog.change_price("m", OLD, actor=ADMIN)
        raise RuntimeError("the transaction fails")
    assert counter.calls == 1 and cache.get("m").price == NEW
    with atomic():  # a transaction that changes no model does not clear anything
        make_user("other@example.com")
    assert counter.calls == 1
    with atomic():
        catalog.set_enabled("m", False, ADMIN)
    assert counter.calls == 2
    with pytest.raises(Exception, match="not available"):
        cache.get("m")


def test_the_gateway_cache_of_the_app_is_cleared_too(app, model):
    cache = app.extensions["tollgate.gateway"].models
    assert cache.get("m").price == OLD
    with atomic():
        catalog.change_price("m", NEW, actor=ADMIN)
    assert cache.get("m").price == NEW


def test_withdrawing_a_planned_change_keeps_the_row_and_audits_it(model, clock):
    first, second = later(days=1), later(days=2)
    row1, _ = plan(first)
    row2, _ = plan(second, Price(input=5_000_000, output=20_000_000))
    with atomic():
        withdrawn = catalog.withdraw_price("m", row1.id, actor=ADMIN, reason="supplier backed down")
    assert withdrawn.withdrawn_at is not None
    assert [r.id for r in catalog.upcoming_prices(model.id)] == [row2.id]
    clock.at(first + timedelta(hours=1))
    assert catalog.serving_model("m").price == OLD  # the withdrawn change never applies
    assert catalog.serving_model("m").price_until == second
    assert db.session.get(ModelPrice, row1.id) is not None  # kept for the record
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "model.price_withdraw")).one()
    assert entry.reason == "supplier backed down" and entry.before["price input"] == "3"
    assert entry.after["price_id"] == row1.id and entry.after["withdrawn_at"]
    with pytest.raises(InvalidInput, match="withdrawn already"):
        with atomic():
            catalog.withdraw_price("m", row1.id, actor=ADMIN)
    clock.at(second + timedelta(seconds=1))
    with pytest.raises(InvalidInput, match="took effect"):
        with atomic():
            catalog.withdraw_price("m", row2.id, actor=ADMIN)
    with pytest.raises(InvalidInput, match="has no price change"):
        with atomic():
            catalog.withdraw_price("m", 999_999, actor=ADMIN)
    assert db.session.scalar(select(db.func.count()).select_from(AuditEntry)
                             .where(AuditEntry.action == "model.price_withdraw")) == 1


def test_a_call_in_flight_settles_at_the_price_its_hold_was_taken_with(model):
    user = make_user(credit=10_000_000)
    with atomic():
        _, plaintext = apikeys.issue(user, "k")
    caller = apikeys.authenticate(plaintext)
    cache = ModelCache(3600)
    catalog.on_change(cache.clear)
    old_id = cache.get("m").price_id

    def start():
        return calls.open_call(calls.new_request_id(), caller, cache.get("m"), Usage(input=1_000, output=1_000),
                               calls.Bounds(1_000, 1_000), client_ip=None, route="chat", streamed=False)

    in_flight = start()
    with atomic():
        new_id = catalog.change_price("m", NEW, actor=ADMIN)[0].id
    after = start()
    used = Usage(input=1_000, output=500)
    assert calls.close_call(in_flight, calls.Outcome("ok", used)) == 1_000 * 2 + 500 * 8
    assert calls.close_call(after, calls.Outcome("ok", used)) == 1_000 * 3 + 500 * 12
    db.session.rollback()
    records = {r.request_id: (r.price_id, r.cost) for r in db.session.scalars(select(UsageRecord))}
    assert records == {in_flight.request_id: (old_id, 6_000), after.request_id: (new_id, 9_000)}


def test_pricing_page_and_models_endpoint_show_the_change_before_it_applies(client, model):
    moment = datetime(2030, 12, 1, tzinfo=timezone.utc)
    plan(moment)
    page = text_of(client.get("/pricing").get_data(as_text=True)).replace(" :", ":")  # "...</time>:"
    assert ("From 2030-12-01 00:00 UTC: per million tokens: input $2.00 → $3.00, output $8.00 → $12.00, "
            "cache read $2.00 → $0.30.") in page
    with atomic():  # a later change that drops a fee and adds a tier
        catalog.change_price("m", Price(input=3_000_000, output=12_000_000, fees={"web_search": 10_000_000}),
                             effective_at=moment - timedelta(days=1), actor=ADMIN)
        catalog.change_price("m", Price(input=3_000_000, output=12_000_000, service_tiers={"flex": {"input": 1}}),
                             effective_at=moment + timedelta(days=1), actor=ADMIN)
    page = text_of(client.get("/pricing").get_data(as_text=True)).replace(" :", ":")
    assert ("From 2030-11-30 00:00 UTC: per million tokens: input $2.00 → $3.00, output $8.00 → $12.00; "
            "per 1,000 uses: web search $10.00.") in page
    assert "From 2030-12-01 00:00 UTC: per million tokens: cache read $3.00 → $0.30; per 1,000 uses: " \
           "web search $10.00 → no charge." in page
    assert "From 2030-12-02 00:00 UTC: per million tokens: cache read $0.30 → $3.00, flex tier input $0.000001." in page
    with atomic():
        for row in catalog.upcoming_prices(model.id)[::2]:
            catalog.withdraw_price("m", row.id, actor=ADMIN)
    assert "before they do" in page
    user = make_user(credit=1)
    with atomic():
        _, plaintext = apikeys.issue(user, "k")
    listed = client.get("/v1/models", headers={"Authorization": f"Bearer {plaintext}"}).get_json()["data"]
    assert listed[0]["pricing"] == {"usd_per_million": {"input": "2", "output": "8"}, "prompt": "0.000002",
                                    "completion": "0.000008", "request": "0", "upcoming": [
        {"effective_at": "2030-12-01T00:00:00Z", "usd_per_million": {"input": "3", "output": "12", "cache_read": "0.3"}}]}
    with atomic():
        catalog.withdraw_price("m", catalog.upcoming_prices(model.id)[0].id, actor=ADMIN, reason="no")
    assert "From 2030" not in client.get("/pricing").get_data(as_text=True)
    listed = client.get("/v1/models", headers={"Authorization": f"Bearer {plaintext}"}).get_json()["data"]
    assert "upcoming" not in listed[0]["pricing"]
    json.dumps(listed)


@pytest.mark.one_backend
def test_differences_name_every_rate_that_changes():
    tiered = Price(input=1, output=2, fees={"web_search": 10}, long_context_above=100, long_context={"input": 5},
                   service_tiers={"priority": {"output": 4}})
    assert catalog.differences(tiered, tiered) == []
    assert catalog.differences(Price(input=1, output=2), tiered) == [
        ("fee web search", None, 10), ("long context input", None, 5), ("priority tier output", None, 4)]
    # a class left unset follows its fallback (listed already); one priced apart is compared at the rate in force
    assert catalog.differences(Price(input=1, output=2), Price(input=3, output=2)) == [("input", 1, 3)]
    assert catalog.differences(Price(input=1, output=2), Price(input=1, output=2, reasoning=2)) == []
    assert catalog.differences(Price(input=1, output=2, cache_read=1), Price(input=3, output=2)) == [
        ("input", 1, 3), ("cache read", 1, 3)]
    assert catalog.differences(None, Price(input=1, output=2))[:2] == [("input", None, 1), ("output", None, 2)]
