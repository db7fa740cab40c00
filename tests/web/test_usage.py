"""Dashboard, usage listing with filters and pages, streamed CSV export, receipts."""
import csv
import io
from datetime import timedelta

from portal import apikeys, calls, catalog, users
from portal.database import atomic
from portal.errors import UnknownUpstream
from portal.models import utcnow
from portal.pricing import Price, Usage
from tests.factories import make_user

PRICE = Price(input=3_000_000, output=15_000_000, cache_read=300_000)


def make_calls(email, count=3, key_name="main", model_id="claude-x"):
    """Real calls through the money path (hold -> settle -> record), without HTTP."""
    with atomic():
        user = users.find_user(email)
        try:
            catalog.find_upstream("echo")
        except UnknownUpstream:
            catalog.add_upstream("echo", "echo")
        catalog.set_model(model_id, "echo", PRICE)
        key, plaintext = apikeys.issue(user, key_name)
        key_id = key.id
    caller = apikeys.authenticate(plaintext)
    model = catalog.serving_model(model_id)
    ids = []
    for i in range(count):
        call = calls.open_call(calls.new_request_id(), caller, model, Usage(input=2_000, output=200),
                               calls.Bounds(input=10_000, output=1_000), client_ip="198.51.100.7",
                               route="messages", streamed=False)
        calls.close_call(call, calls.Outcome("ok", Usage(input=1000 + i, output=100, cache_read=500), False, 200,
                                             duration_ms=42))
        ids.append(call.request_id)
    return key_id, ids


def call_rows(html: str) -> int:
    """Rows of the calls table (header included), not of the spend tables beside it."""
    return html.split('class="cards calls"', 1)[1].split("</table>", 1)[0].count("<tr>")


def test_dashboard_shows_money_chart_and_recent_calls(client, auth):
    make_user(credit=5_000_000)
    make_calls("person@example.com", 2)
    auth.login()
    html = client.get("/dashboard/").get_data(as_text=True)
    # two calls of 3000 + 1500 + 150 (+3 for the second's extra input token) micro-dollars
    assert 'title="$4.990697" data-testid="balance">$4.99<' in html  # a headline: cents, exact on hover
    assert "<svg" in html and "Spend per day" in html and "$0.009303 in all" in html
    assert html.count("claude-x") >= 2


def test_usage_filters_pages_and_fragment(client, auth):
    make_user(credit=50_000_000)
    key_a, _ = make_calls("person@example.com", 30, "alpha", "model-a")
    key_b, _ = make_calls("person@example.com", 25, "beta", "model-b")
    auth.login()
    first = client.get("/usage/")
    html = first.get_data(as_text=True)
    assert call_rows(html) == 51 and "Older" in html  # header + 50 rows
    second = client.get("/usage/?page=2", headers={"HX-Request": "true"})
    fragment = second.get_data(as_text=True)
    assert "<html" not in fragment and call_rows(fragment) == 6 and "Older" not in fragment
    assert "HX-Request" in second.headers["Vary"]
    only_b = client.get(f"/usage/?key={key_b}").get_data(as_text=True)
    assert only_b.count("model-b") >= 25 and "model-a</code>" not in only_b
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    assert "No calls match." in client.get(f"/usage/?start={tomorrow}").get_data(as_text=True)


def test_csv_export_is_streamed_and_filtered(client, auth):
    make_user(credit=50_000_000)
    make_calls("person@example.com", 3, "alpha", "model-a")
    key_b, ids = make_calls("person@example.com", 2, "beta", "model-b")
    auth.login()
    response = client.get(f"/usage/export.csv?key={key_b}")
    assert response.mimetype == "text/csv" and "Content-Length" not in response.headers  # streamed
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert sorted(r["request_id"] for r in rows) == sorted(ids)
    assert {r["key"] for r in rows} == {"beta"} and rows[0]["cost_micro_usd"] in ("4650", "4653")


def test_receipt_shows_the_arithmetic(client, auth):
    make_user(credit=5_000_000)
    _, [request_id] = make_calls("person@example.com", 1)
    auth.login()
    html = client.get(f"/usage/{request_id}").get_data(as_text=True)
    assert request_id in html
    # 1000 x 3,000,000 + 100 x 15,000,000 + 500 x 300,000 = 4,650,000,000
    assert "round_half_up(4,650,000,000 / 1,000,000) = 4,650 micro-dollars" in html
    assert "Charged: <strong>4,650 micro-dollars = $0.00465</strong>" in html
    assert "1,000 tokens × $3.00 per million" in html and "500 tokens × $0.30 per million" in html
    assert "Balance after" in html and "$4.99535" in html


def test_receipts_are_private(client, auth):
    make_user("owner@example.com", credit=5_000_000)
    _, [request_id] = make_calls("owner@example.com", 1)
    make_user()
    auth.login()
    assert client.get(f"/usage/{request_id}").status_code == 404
    assert request_id not in client.get("/usage/export.csv").get_data(as_text=True)


def test_pricing_page(client):
    make_user()
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("cheap", "echo", Price(input=75_000, output=300_000))
    html = client.get("/pricing").get_data(as_text=True)
    assert "<code>cheap</code>" in html and "$0.075" in html and "$0.30" in html and "Price since" in html


def test_receipt_says_a_call_was_translated(client, auth):
    """A call carried to its provider in another API's format (proxy/translate/) says so on its receipt."""
    from dataclasses import replace
    make_user(credit=5_000_000)
    make_calls("person@example.com", 1)
    with atomic():
        _, plaintext = apikeys.issue(users.find_user("person@example.com"), "second")
    caller = apikeys.authenticate(plaintext)
    call = calls.open_call(calls.new_request_id(), caller, catalog.serving_model("claude-x"), Usage(input=10, output=5),
                           calls.Bounds(input=100, output=50), client_ip=None, route="messages", streamed=True)
    call = replace(call, attempts=({"upstream": "deepseek", "result": "ok", "ms": 40,
                                    "translated_to": "/v1/chat/completions"},))
    calls.close_call(call, calls.Outcome("ok", Usage(input=10, output=5), False, 200, duration_ms=40))
    auth.login()
    html = client.get(f"/usage/{call.request_id}").get_data(as_text=True)
    assert "reached its provider as /v1/chat/completions" in html
    plain = client.get(f"/usage/{make_calls('person@example.com', 1, key_name='third')[1][0]}").get_data(as_text=True)
    assert "reached its provider as" not in plain
