"""Issue 12, the dashboard: day-one guidance instead of a blank chart, headline balances in cents with
the exact figure on hover, a daily spend chart with axes, phone tables, and both languages."""
import re
import xml.etree.ElementTree as ET

from portal import apikeys, users
from portal.database import atomic
from tests.factories import make_user
from tests.web.test_usage import make_calls

SVG = "{http://www.w3.org/2000/svg}"


def first_steps(html: str) -> str:
    found = re.search(r'<section[^>]*data-testid="first-steps".*?</section>', html, re.S)
    return found.group(0) if found else ""


def test_day_one_without_a_key_or_money_says_what_to_do(client, auth):
    auth.user()  # no credit, no key, no calls
    html = client.get("/dashboard/").get_data(as_text=True)
    steps = first_steps(html)
    assert steps, "no first-day guidance"
    assert 'href="/keys/">Create an API key</a>' in steps
    assert 'data-testid="first-topup"' in steps and 'href="/billing/">Top up</a>' in steps
    assert 'href="/quickstart">Quickstart</a>' in steps
    assert 'class="plot' not in html and "Recent calls" not in html  # no blank chart, no empty table


def test_day_one_with_a_key_and_credit_skips_those_steps(client, auth):
    user = auth.user(credit=5_000_000)
    with atomic():
        apikeys.issue(users.find_user(user.email), "laptop")
    steps = first_steps(client.get("/dashboard/").get_data(as_text=True))
    assert "You have an API key." in steps and "Create an API key</a> and copy it" not in steps
    assert 'data-testid="first-topup"' not in steps and "Quickstart</a>" in steps


def test_after_the_first_call_the_chart_has_axes_and_a_total(client, auth):
    make_user(credit=5_000_000)
    make_calls("person@example.com", 2)
    auth.login()
    html = client.get("/dashboard/").get_data(as_text=True)
    assert not first_steps(html)
    chart = ET.fromstring(re.search(r'<svg [^>]*id="daily-spend".*?</svg>', html, re.S).group(0))
    assert chart.find(f"{SVG}title").text == "Spend per day, last 30 days (UTC)"
    texts = [t for t in chart.iter(f"{SVG}text")]
    ticks = [t.text for t in texts if t.get("class") == "tick"]
    labels = [t.text for t in texts if t.get("class") == "label"]
    assert ticks[0] == "$0.00" and len(ticks) >= 3  # a money axis from zero
    assert 2 <= len(labels) <= 7 and all(re.fullmatch(r"\d\d-\d\d", label) for label in labels)  # few, short days
    assert "Spend: $0.009303 in all" in [t.text for t in texts if t.get("class") == "legend"]
    assert int(chart.get("viewBox").split()[2]) <= 420  # narrow: its text stays readable on a phone
    # Recent calls: a phone-card table with a caption and the cost on every card.
    table = re.search(r'<table class="cards calls">.*?</table>', html, re.S).group(0)
    assert "<caption" in table and table.count('data-label="Cost"') == 2


def test_headline_balances_show_cents_with_the_exact_figure_on_hover(client, auth):
    make_user(credit=5_000_000)
    make_calls("person@example.com", 2)
    auth.login()
    html = client.get("/dashboard/").get_data(as_text=True)
    assert '<span class="money" title="$4.990697" data-testid="balance">$4.99</span>' in html
    assert '<span class="money" title="$4.990697" data-testid="available">$4.99</span>' in html
    assert 'title="$0.00" data-testid="held">$0.00<' in html


def test_chinese_dashboard(client, auth):
    auth.user()
    client.post("/language", data={"lang": "zh", "next": "/dashboard/"})
    html = client.get("/dashboard/").get_data(as_text=True)
    steps = first_steps(html)
    assert "发起第一次调用" in steps and "创建 API 密钥</a>" in steps and "快速上手</a>" in steps
    assert "进行中调用的预扣金额" in html and 'data-testid="balance">US$0.00<' in html
