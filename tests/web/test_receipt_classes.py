"""Receipts of calls that used every token class, fees, a service tier and long context: the page, the
usage list, the CSV and the JSON, recorded through the real money path (hold -> settle -> record)."""
import csv
import io

from sqlalchemy import update

from portal import apikeys, calls, catalog, usage, users
from portal.database import atomic
from portal.errors import UnknownUpstream
from portal.extensions import db
from portal.models import UsageRecord
from portal.pricing import TOKEN_CLASSES, Price, Usage
from tests.factories import make_user

M = 1_000_000
# Sonnet-like: output audio left unpriced on purpose (charged at the highest input-side price, flagged).
RICH = Price(input=3 * M, output=15 * M, cache_read=300_000, cache_write_5m=3_750_000, cache_write_1h=6 * M,
             input_audio=3_500_000, fees={"web_search": 10 * M},
             long_context_above=200_000,
             long_context={"input": 6 * M, "output": 22_500_000, "cache_read": 600_000, "cache_write_5m": 7_500_000,
                           "cache_write_1h": 12 * M},
             service_tiers={"priority": {"output": 30 * M}})
# 150,001 + 40,001 + 10,000 + 5,000 + 300 = 205,302 input-side tokens: above 200,000, so long context.
USED = Usage(input=150_001, output=2_000, cache_read=40_001, cache_write_5m=10_000, cache_write_1h=5_000,
             input_audio=300, output_audio=50, reasoning=1_000, units={"web_search": 3, "mystery_tool": 2},
             service_tier="priority", notes=("total_tokens guard: +0 reasoning",))
# Worked by hand, in millionths of a micro-dollar:
#   input          150,001 x  6,000,000 (long context)    =   900,006,000,000
#   output           2,000 x 30,000,000 (priority tier)   =    60,000,000,000
#   cache read      40,001 x    600,000 (long context)    =    24,000,600,000
#   cache write 5m  10,000 x  7,500,000 (long context)    =    75,000,000,000
#   cache write 1h   5,000 x 12,000,000 (long context)    =    60,000,000,000
#   input audio        300 x  3,500,000                   =     1,050,000,000
#   output audio        50 x 12,000,000 (unpriced)        =       600,000,000
#   reasoning        1,000 x 30,000,000 (output's rate)   =    30,000,000,000
#   web search           3 x 10,000,000 x 1,000           =    30,000,000,000
#   mystery tool         2, unpriced: 0
#   total 1,180,656,600,000 -> 1,180,656.6 -> 1,180,657 micro-dollars
EXACT, COST = 1_180_656_600_000, 1_180_657


def rich_call(usage_=USED, cost=COST, email="person@example.com") -> str:
    """One call charged `cost` for `usage_` at RICH through portal.calls; its request id."""
    with atomic():
        user = users.find_user(email)
        try:
            catalog.find_upstream("echo")
        except UnknownUpstream:
            catalog.add_upstream("echo", "echo")
        catalog.set_model("sonnet-rich", "echo", RICH)
        _, plaintext = apikeys.issue(user, "main")
    caller = apikeys.authenticate(plaintext)
    model = catalog.serving_model("sonnet-rich")
    call = calls.open_call(calls.new_request_id(), caller, model, Usage(input=300_000, output=10_000),
                           calls.Bounds(input=1_000_000, output=100_000), client_ip="198.51.100.7",
                           route="messages", streamed=False)
    assert calls.close_call(call, calls.Outcome("ok", usage_, False, 200, duration_ms=42)) == cost
    return call.request_id


def test_the_record_keeps_every_class(app):
    account_id = make_user(credit=10_000_000).account.id
    request_id = rich_call()
    r = usage.receipt(account_id, request_id)
    assert r.usage.tokens() == USED.tokens() and dict(r.usage.units) == dict(USED.units)
    assert r.usage.service_tier == "priority" and r.record.long_context is True
    assert (r.arithmetic.exact, r.recomputed, r.record.cost, r.consistent) == (EXACT, COST, COST, True)


def test_receipt_page_shows_every_class_fee_tier_and_long_context(client, auth):
    make_user(credit=10_000_000)
    request_id = rich_call()
    auth.login()
    html = client.get(f"/usage/{request_id}").get_data(as_text=True)
    rows = [
        ("Input", "long context", "150,001 tokens × $6.00 per million", "$0.900006"),
        ("Output", "priority tier", "2,000 tokens × $30.00 per million", "$0.06"),
        ("Cache read", "long context", "40,001 tokens × $0.60 per million", "$0.0240006"),
        ("Cache write (5 minutes)", "long context", "10,000 tokens × $7.50 per million", "$0.075"),
        ("Cache write (1 hour)", "long context", "5,000 tokens × $12.00 per million", "$0.06"),
        ("Input audio", "", "300 tokens × $3.50 per million", "$0.00105"),
        ("Output audio", "unpriced: highest input-side price", "50 tokens × $12.00 per million", "$0.0006"),
        ("Reasoning", "", "1,000 tokens × $30.00 per million", "$0.03"),
        ("Web search", "", "3 × $10.00 per thousand", "$0.03"),
        ("Mystery tool", "unpriced: not charged", "2 × $0.00 per thousand", "$0.00"),
    ]
    for label, note, arithmetic, amount in rows:
        head = f"<th scope=\"row\">{label}" + (f"<br><small>{note}</small>" if note else "") + "</th>"
        assert head in html, label
        assert f"<td>{arithmetic}</td>\n      <td class=\"num\">{amount}</td>" in html, label
    assert "Exact total</th><td class=\"num\">$1.1806566</td>" in html
    assert "round_half_up(1,180,656,600,000 / 1,000,000) = 1,180,657 micro-dollars" in html
    assert "Charged: <strong>1,180,657 micro-dollars = $1.180657</strong>" in html
    assert "the input (205,302 tokens) was above 200,000 tokens" in html
    assert "<dt>Service tier</dt><dd>priority: this tier's prices applied</dd>" in html
    # Flags, in words.
    assert "Output audio tokens have no price of their own for this model" in html
    assert "Mystery tool (2) has no price for this model and was not charged." in html
    assert "Metering: total_tokens guard: +0 reasoning" in html and "Metering: unpriced" not in html
    assert 'role="alert"' not in html  # the arithmetic agrees with the charge


def test_zero_lines_left_out_of_the_page_but_not_the_json(client, auth):
    account_id = make_user(credit=10_000_000).account.id
    request_id = rich_call(Usage(input=1_000, output=100), 4_500)  # 1,000 x $3 + 100 x $15 per million
    auth.login()
    html = client.get(f"/usage/{request_id}").get_data(as_text=True)
    assert "Input</th>" in html and "Output</th>" in html
    assert "Reasoning" not in html and "Cache write" not in html and "Notes on this charge" not in html
    body = usage.as_json(usage.receipt(account_id, request_id))
    assert [line["class"] for line in body["lines"]] == list(TOKEN_CLASSES)
    assert body["tokens"] == {**{name: 0 for name in TOKEN_CLASSES}, "input": 1_000, "output": 100}
    assert body["service_tier"] is None and body["long_context"] is False and body["flags"] == []


def test_a_charge_that_disagrees_with_its_arithmetic_is_called_out(client, auth):
    account_id = make_user(credit=10_000_000).account.id
    request_id = rich_call()
    with atomic():  # what a bug in settlement would leave behind
        db.session.execute(update(UsageRecord).where(UsageRecord.request_id == request_id).values(cost=COST + 1))
    auth.login()
    html = client.get(f"/usage/{request_id}").get_data(as_text=True)
    assert 'role="alert"><strong>Warning:</strong> the arithmetic above gives 1,180,657 micro-dollars' in html
    body = usage.as_json(usage.receipt(account_id, request_id))
    assert body["flags"][-1]["code"] == "mismatch" and body["charge_micro_usd"] == COST + 1


def test_estimated_and_clamped_calls_say_so(client, auth):
    make_user(credit=10_000_000)
    with atomic():
        catalog.add_upstream("echo", "echo")
    request_id = _clamped_estimated_call()
    auth.login()
    html = client.get(f"/usage/{request_id}").get_data(as_text=True)
    assert "Estimated: the upstream did not report this call&#39;s usage" in html
    assert "Capped: the upstream reported more tokens than this request allowed" in html
    listing = client.get("/usage/").get_data(as_text=True)
    assert "est.</abbr>" in listing


def _clamped_estimated_call() -> str:
    with atomic():
        catalog.set_model("sonnet-rich", "echo", RICH)
        _, plaintext = apikeys.issue(users.find_user("person@example.com"), "main")
    call = calls.open_call(calls.new_request_id(), apikeys.authenticate(plaintext), catalog.serving_model("sonnet-rich"),
                           Usage(input=2_000, output=500), calls.Bounds(input=2_000, output=500),
                           client_ip=None, route="messages", streamed=True)
    calls.close_call(call, calls.Outcome("client_disconnected", Usage(input=1_000, output=900), True, 200))
    return call.request_id


def test_usage_list_and_csv_carry_the_classes(client, auth):
    make_user(credit=10_000_000)
    request_id = rich_call()
    auth.login()
    listing = client.get("/usage/").get_data(as_text=True)
    assert ("1-hour cache write 5,000; input audio 300; output audio 50; reasoning 1,000; mystery tool ×2; "
            "web search ×3; priority tier; long context") in listing
    [row] = list(csv.DictReader(io.StringIO(client.get("/usage/export.csv").get_data(as_text=True))))
    assert row["request_id"] == request_id
    assert {name: int(row[f"{name}_tokens"]) for name in TOKEN_CLASSES} == USED.tokens()
    assert row["fee_units"] == "mystery_tool=2 web_search=3"
    assert (row["service_tier"], row["long_context"], row["estimated"], row["clamped"]) == ("priority", "yes", "no",
                                                                                          "no")
    assert (row["cost_micro_usd"], row["cost_usd"]) == (str(COST), "1.180657")
    assert row["flags"] == "unpriced class: output_audio; unpriced unit: mystery_tool; total_tokens guard: +0 reasoning"
