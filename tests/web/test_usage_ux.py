"""Issue 12, "see your money": the usage page's totals (all pages of the filtered set, summed by the
database as integers), its spend charts per model and per key, the same filters for all of them,
the htmx swap and the plain form, phone tables, and both languages. Runs on SQLite and Postgres."""
import csv
import io
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

from sqlalchemy import select, update

from portal import usage
from portal.database import atomic
from portal.extensions import db
from portal.models import UsageRecord, utcnow
from portal.pricing import TOKEN_CLASSES
from tests.factories import make_user
from tests.web.test_receipt_classes import USED, rich_call
from tests.web.test_usage import make_calls

SVG = "{http://www.w3.org/2000/svg}"
LONG_MODEL = "vendor-model-with-a-very-long-name-2025-06-30-preview-extended"


def account_id(email="person@example.com") -> int:
    from portal import users
    return users.find_user(email).account.id


def rows_of(account) -> list[UsageRecord]:
    db.session.rollback()
    return list(db.session.scalars(select(UsageRecord).where(UsageRecord.account_id == account)))


def figure(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">([^<]*)<', html)
    assert found, testid
    return found.group(1)


def svg(html: str, chart_id: str) -> ET.Element:
    markup = re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', html, re.S)
    assert markup, chart_id
    return ET.fromstring(markup.group(0))


def busy_account():
    """56 calls over two keys and three models (one with every token class), more than a page."""
    make_user(credit=50_000_000)
    key_a, _ = make_calls("person@example.com", 30, "alpha", "model-a")
    key_b, _ = make_calls("person@example.com", 25, "beta", LONG_MODEL)
    rich_call()  # every class, on a third key ("main") and model
    return key_a, key_b


def test_totals_are_the_sum_of_every_row_of_every_page(client, auth):
    busy_account()
    auth.login()
    account = account_id()
    records = rows_of(account)
    assert len(records) == 56
    totals = usage.totals(account, usage.Filters())
    expected = {name: sum(getattr(r, f"{name}_tokens") for r in records) for name in TOKEN_CLASSES}
    assert totals.tokens == expected and totals.tokens["output_audio"] == USED.output_audio
    assert (totals.calls, totals.cost) == (56, sum(r.cost for r in records))
    # Plain integers on both backends (Postgres sums BIGINT into NUMERIC; usage.totals casts back).
    assert all(type(v) is int for v in (totals.calls, totals.cost, *totals.tokens.values()))

    html = client.get("/usage/").get_data(as_text=True)
    assert "Older" in html  # the page shows 50 of them; the totals cover all 56
    assert figure(html, "total-calls") == "56"
    assert figure(html, "total-cost") == usage_usd(totals.cost)
    for name in TOKEN_CLASSES:  # every class these calls used has its figure
        assert figure(html, f"total-{name}") == f"{expected[name]:,}", name


def usage_usd(micro: int) -> str:
    from portal.money import format_usd
    return format_usd(micro)


def test_totals_and_charts_follow_the_filters(client, auth):
    key_a, key_b = busy_account()
    account = account_id()
    # Ten of alpha's calls were made three days ago.
    with atomic():
        old = [r.id for r in rows_of(account) if r.api_key_id == key_a][:10]
        db.session.execute(update(UsageRecord).where(UsageRecord.id.in_(old))
                           .values(started_at=utcnow() - timedelta(days=3)))
    auth.login()
    today = utcnow().date()
    records = rows_of(account)
    recent = [r for r in records if r.started_at.date() >= today - timedelta(days=1)]
    html = client.get(f"/usage/?start={today - timedelta(days=1)}&end={today}").get_data(as_text=True)
    assert figure(html, "total-calls") == str(len(recent)) == "46"
    assert figure(html, "total-cost") == usage_usd(sum(r.cost for r in recent))
    by_key = svg(html, "spend-by-key")
    alpha = [r for r in recent if r.api_key_id == key_a]
    titles = [g.find(f"{SVG}title").text for g in by_key.iter(f"{SVG}g")]
    assert any(t.startswith("alpha (") and f": {usage_usd(sum(r.cost for r in alpha))} (20 calls)" in t
               for t in titles), titles

    only_b = client.get(f"/usage/?key={key_b}").get_data(as_text=True)
    b_rows = [r for r in records if r.api_key_id == key_b]
    assert figure(only_b, "total-calls") == "25"
    assert figure(only_b, "total-input") == f"{sum(r.input_tokens for r in b_rows):,}"
    assert len([g for g in svg(only_b, "spend-by-model").iter(f"{SVG}g")]) == 1  # one model: one bar


def test_charts_have_axes_totals_and_full_names_on_hover(client, auth):
    busy_account()
    auth.login()
    html = client.get("/usage/").get_data(as_text=True)
    total = usage.totals(account_id(), usage.Filters()).cost
    for chart_id, heading in (("spend-by-model", "Spend by model"), ("spend-by-key", "Spend by key")):
        chart = svg(html, chart_id)
        assert chart.get("role") == "img" and chart.find(f"{SVG}title").text == heading
        assert chart.get("viewBox").startswith("0 0 360 ")  # drawn for a phone's width
        texts = {t.get("class"): [] for t in chart.iter(f"{SVG}text")}
        for t in chart.iter(f"{SVG}text"):
            texts[t.get("class")].append(t.text)
        assert texts["tick"][0] == "$0.00" and len(texts["tick"]) >= 3  # an x axis from zero, with round steps
        assert texts["total"] == [f"Total: {usage_usd(total)}"]
        assert f"{usage_usd(total)} in all" in chart.find(f"{SVG}desc").text
    models = svg(html, "spend-by-model")
    labels = [t.text for t in models.iter(f"{SVG}text") if t.get("class") == "label"]
    assert labels[0] == "sonnet-rich"  # the largest first
    shortened = [t for t in labels if t.endswith("…")]
    assert shortened and LONG_MODEL.startswith(shortened[0][:-1]) and LONG_MODEL not in labels
    assert any(g.find(f"{SVG}title").text.startswith(LONG_MODEL + ": $") for g in models.iter(f"{SVG}g"))
    # The same figures as a phone-friendly table, for screen readers and copying.
    assert f'<td data-label="Model">{LONG_MODEL}</td>' in html


def test_many_models_are_summed_into_others(client, auth):
    make_user(credit=50_000_000)
    for n in range(10):
        make_calls("person@example.com", 1, f"k{n}", f"model-{n}")
    auth.login()
    chart = svg(client.get("/usage/").get_data(as_text=True), "spend-by-model")
    labels = [t.text for t in chart.iter(f"{SVG}text") if t.get("class") == "label"]
    assert len(labels) == 8 and labels[-1] == "3 other models"


def test_htmx_swaps_results_and_the_form_works_without_script(client, auth):
    key_a, _ = busy_account()
    auth.login()
    page = client.get("/usage/").get_data(as_text=True)
    form = re.search(r"<form [^>]*class=\"filters\"[^>]*>", page).group(0)
    assert 'method="get"' in form and 'action="/usage/"' in form  # a plain GET form with script off
    assert 'hx-target="#results"' in form and 'hx-get="/usage/"' in form
    assert page.count('type="date"') == 2
    fragment = client.get(f"/usage/?key={key_a}", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and "HX-Request" in fragment.headers["Vary"]
    assert figure(body, "total-calls") == "30" and 'id="spend-by-model"' in body and 'id="spend-by-key"' in body


def test_tables_are_cards_with_captions_on_a_wide_page(client, auth):
    busy_account()
    auth.login()
    html = client.get("/usage/").get_data(as_text=True)
    assert re.search(r'<body class="[^"]*\bwide\b', html)
    tables = re.findall(r"<table[^>]*>.*?</table>", html, re.S)
    assert len(tables) == 3
    for table in tables:
        assert 'class="cards' in table.split(">", 1)[0] and "<caption" in table
        cells = re.findall(r"<td[^>]*>", table)
        assert cells and all("data-label=" in cell for cell in cells)
    calls = next(t for t in tables if "cards calls" in t)
    assert calls.count('data-label="Cost"') == 50  # the cost shows on every phone card


def test_empty_states_say_what_to_do(client, auth):
    auth.user(credit=5_000_000)
    html = client.get("/usage/").get_data(as_text=True)
    assert 'class="empty"' in html and 'href="/keys/">Create an API key</a>' in html
    assert 'id="spend-by-model"' not in html  # no empty charts
    filtered = client.get("/usage/?start=2000-01-01&end=2000-01-02").get_data(as_text=True)
    assert "No calls match." in filtered and 'href="/usage/">Show every call</a>' in filtered


def test_chinese_usage_page_and_an_english_csv(client, auth):
    busy_account()
    auth.login()
    client.post("/language", data={"lang": "zh", "next": "/usage/"})
    html = client.get("/usage/").get_data(as_text=True)
    assert "按模型统计消费" in html and "按密钥统计消费" in html and "各类 token" in html
    assert "US$0.00" in html and "合计：US$" in html  # money and the chart's total in Chinese formats
    assert 'data-label="费用"' in html and "调用记录，最新的在前" in html
    model_chart = svg(html, "spend-by-model")
    assert model_chart.find(f"{SVG}desc").text.startswith("按模型统计消费：")
    # The CSV stays machine-readable: English column names, dots in numbers.
    header = next(csv.reader(io.StringIO(client.get("/usage/export.csv").get_data(as_text=True))))
    assert header[:3] == ["time", "request_id", "key"] and "cost_usd" in header


def test_receipt_in_chinese(client, auth):
    make_user(credit=10_000_000)
    request_id = rich_call()
    auth.login()
    client.post("/language", data={"lang": "zh", "next": "/"})
    html = client.get(f"/usage/{request_id}").get_data(as_text=True)
    assert "费用如何计算" in html and "150,001 个 token × 每百万 US$6.00" in html
    assert "此模型没有单独为音频输出 token 定价" in html  # a flag, in words, in Chinese
    assert "round_half_up(1,180,656,600,000 / 1,000,000) = 1,180,657 微美元" in html
