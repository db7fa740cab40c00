"""Cost prices: what the operator pays upstream, stored per model, and each call's upstream cost
recorded at settlement by the same pricing rule from the same usage."""
import json

import pytest
from sqlalchemy import select

from portal import apikeys, calls, catalog
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry, CatalogModel, UsageRecord
from portal.pricing import Price, Usage, quote
from tests.factories import make_user

M = 1_000_000
PRICE = Price(input=3 * M, output=15 * M, cache_read=M * 3 // 10, fees={"web_search": 10 * M},
              long_context_above=1_000, long_context={"input": 6 * M},
              service_tiers={"priority": {"input": 5 * M, "output": 25 * M}})
# What the operator pays: every class apart, a fee, long context and a tier, all cheaper.
COST = Price(input=2 * M, output=10 * M, cache_read=200_000, cache_write_5m=2_500_000, cache_write_1h=4 * M,
             input_audio=7 * M, output_audio=9 * M, reasoning=11 * M, fees={"web_search": 8 * M},
             long_context_above=1_000, long_context={"input": 4 * M, "output": 15 * M},
             service_tiers={"priority": {"input": 3_333_333, "output": 17 * M}})
ADMIN = Actor(label="admin@example.com", ip="203.0.113.7")


@pytest.fixture
def caller(app):
    user = make_user(credit=100 * M)
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("m", "echo", PRICE, max_output_tokens=100_000)
        _, plaintext = apikeys.issue(user, "k")
    return apikeys.authenticate(plaintext)


def call(caller, usage: Usage, model=None) -> UsageRecord:
    model = model or catalog.serving_model("m")
    opened = calls.open_call(calls.new_request_id(), caller, model, Usage(input=5_000, output=5_000,
                             units={"web_search": 5}), calls.Bounds(5_000, 5_000, {"web_search": 5}), client_ip=None,
                             route="chat", streamed=False, tiers=(None, "priority"))
    calls.close_call(opened, calls.Outcome("ok", usage))
    db.session.rollback()
    return db.session.scalars(select(UsageRecord).where(UsageRecord.request_id == opened.request_id)).one()


@pytest.mark.parametrize("usage", [
    Usage(input=123, output=45),
    Usage(input=600, cache_read=300, cache_write_5m=50, cache_write_1h=40, input_audio=7, output=80, reasoning=33,
          output_audio=5, units={"web_search": 3}),
    Usage(input=1_001, output=10),                       # long context for both prices
    Usage(input=10, output=10, service_tier="priority"),  # the tier's rates for both
    Usage(input=1, output=0),                           # a fraction of a micro-dollar, rounded half up once
])
def test_each_call_records_its_upstream_cost_exactly(caller, usage):
    with atomic():
        catalog.set_cost_price("m", COST, actor=ADMIN)
    record = call(caller, usage)
    assert record.cost == quote(PRICE, usage)
    assert record.upstream_cost == quote(COST, usage)
    assert isinstance(record.upstream_cost, int)


def test_no_cost_price_records_null_and_a_released_call_costs_nothing(caller):
    record = call(caller, Usage(input=100, output=100))
    assert record.upstream_cost is None and record.cost > 0
    with atomic():
        catalog.set_cost_price("m", COST, actor=ADMIN)
    record = call(caller, None)  # nothing reached the client: released
    assert (record.cost, record.upstream_cost) == (0, 0)


def test_a_call_in_flight_keeps_the_cost_price_it_started_with(caller):
    with atomic():
        catalog.set_cost_price("m", COST, actor=ADMIN)
    model = catalog.serving_model("m")  # as the proxy's cache holds it
    with atomic():
        catalog.set_cost_price("m", Price(input=0, output=0), actor=ADMIN)
    usage = Usage(input=200, output=300)
    assert call(caller, usage, model).upstream_cost == quote(COST, usage)
    assert call(caller, usage).upstream_cost == 0


def test_set_cost_price_stores_audits_and_is_idempotent(caller):
    with atomic():
        _, changed = catalog.set_cost_price("m", COST, actor=ADMIN, reason="contract")
    assert changed
    db.session.rollback()
    stored = db.session.scalar(select(CatalogModel.cost_price))
    assert stored["usd_per_million"]["input"] == "2"  # decimal strings, never floats
    assert catalog.cost_price_of(catalog.find_model("m")) == COST
    assert catalog.serving_model("m").cost_price == COST
    with atomic():
        _, changed = catalog.set_cost_price("m", COST, actor=ADMIN)
    assert not changed
    with atomic():
        _, changed = catalog.set_cost_price("m", None, actor=ADMIN, reason="gone")
    assert changed and catalog.serving_model("m").cost_price is None
    entries = list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == "model.cost_price")
                                      .order_by(AuditEntry.id)))
    assert [e.reason for e in entries] == ["contract", "gone"]
    assert entries[0].before == {} and entries[0].after["cost input"] == "2"
    assert entries[0].after["cost tier:priority:input"] == "3.333333"
    assert entries[1].after == {} and entries[1].before["cost fee:web_search"] == "8"


def test_price_files_carry_cost_prices_both_ways(caller):
    from portal import pricefile
    from portal.errors import InvalidInput

    def apply(text, kind):
        with atomic():
            return pricefile.import_text(text, kind, actor=ADMIN)

    spec = {"id": "m", "upstream": "echo", **pricefile.price_to_spec(PRICE),
            "cost_price": pricefile.price_to_spec(COST)}
    assert apply(json.dumps({"models": [spec]}), "json") == [("m", "updated")]  # the cost price alone changed
    assert catalog.serving_model("m").cost_price == COST
    exported = pricefile.export_json()
    assert json.loads(exported)["models"][0]["cost_price"]["usd_per_million"]["input"] == "2"
    assert apply(exported, "json") == [("m", "unchanged")]
    csv_text = pricefile.export_csv()
    header = csv_text.splitlines()[0].split(",")
    start = header.index("cost:input")
    assert header[start:start + 8] == [f"cost:{name}" for name in
                              ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h", "input_audio",
                               "output_audio", "reasoning")]
    assert "cost:tier:priority:input" in header and "cost:fee:web_search" in header
    assert apply(csv_text, "csv") == [("m", "unchanged")]
    # A CSV row without cost columns keeps it; a JSON null clears it.
    assert apply("id,upstream,input,output\nm,echo,3,15\n", "csv")[0][1] == \
        "new price"  # (the rarer parts of PRICE are not in this row)
    assert catalog.serving_model("m").cost_price == COST
    assert apply(json.dumps({"models": [{**spec, "cost_price": None}]}), "json")[0][1] == "new price"
    assert catalog.serving_model("m").cost_price is None
    assert apply("id,upstream,input,output,cost:input,cost:output,cost:tier:priority:input\nm,echo,3,15,1,2,4\n",
                 "csv") == [("m", "new price")]
    assert catalog.serving_model("m").cost_price == Price(input=M, output=2 * M,
                                                          service_tiers={"priority": {"input": 4 * M}})
    audited = db.session.scalar(select(db.func.count()).select_from(AuditEntry)
                                .where(AuditEntry.action == "model.cost_price"))
    assert audited == 3
    # Errors name the model and the field, and nothing changes.
    bad = json.dumps({"models": [{**spec, "cost_price": {"usd_per_million": {"input": "1"}}},
                                 {**spec, "id": "n", "cost_price": {"input": "1"}}]})
    with pytest.raises(InvalidInput) as raised:
        apply(bad, "json")
    assert "models[0] (m).cost_price.usd_per_million: 'output' is required" in str(raised.value)
    assert "models[1] (n).cost_price must be null or an object with" in str(raised.value)
    with pytest.raises(InvalidInput, match=r"line 2 \(m\): column cost:output is empty; the cost price needs"):
        apply("id,upstream,input,output,cost:input\nm,echo,3,15,1\n", "csv")
    with pytest.raises(InvalidInput, match="unknown column 'cost:upstream'"):
        apply("id,upstream,input,output,cost:upstream\nm,echo,3,15,x\n", "csv")
    assert catalog.serving_model("m").cost_price == Price(input=M, output=2 * M,
                                                          service_tiers={"priority": {"input": 4 * M}})
