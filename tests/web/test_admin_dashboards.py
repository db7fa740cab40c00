"""The console's home page: the dashboards, for admins only, with charts that are images with tables beside them."""
import re
from datetime import timedelta

import pytest

from portal import dashboards, ledger
from portal.database import atomic
from portal.models import utcnow
from tests.domain.test_dashboards import Calls
from tests.factories import earlier_today, make_model, make_user


@pytest.fixture
def calls(app):
    return Calls()


def test_the_console_home_shows_the_days_figures(client, auth, calls, monkeypatch):
    auth.admin()
    model = make_model("sonnet-ish", upstream="anthropic-like")
    spender = make_user("big.spender@example.com", credit=5_000_000)
    now = utcnow()
    # The page's "today" is the day of this `now`, even when the test runs across midnight (it did in CI).
    monkeypatch.setattr(dashboards, "utcnow", lambda: now)
    calls.add(spender, model, earlier_today(now, 3), cost=1_234_567, duration_ms=900, first_byte_ms=150)
    calls.add(spender, model, now - timedelta(days=3), cost=1_000_000, status="upstream_error")
    with atomic():
        hold = ledger.hold(spender.account.id, 400_000)

    page = client.get("/admin/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # The charts are images with a title; any other <svg> (the logo mark in base.html) is decoration, hidden.
    charts = re.findall(r'<svg[^>]*class="plot"[^>]*>', html)
    assert len(charts) == 4
    for svg in charts:
        assert 'role="img"' in svg and "aria-labelledby" in svg
    for svg in re.findall(r"<svg[^>]*>", html):
        assert svg in charts or 'aria-hidden="true"' in svg
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="plot"') == 4
    assert "<title id=\"chart-revenue-title\">Revenue per day</title>" in html
    assert "$2.234567" in html  # spend of the period, in the figures and the table
    assert "sonnet-ish" in html and "anthropic-like" in html
    assert "no cost price" in html or "Upstream cost" in html
    assert f'href="/admin/users/{spender.id}">big.spender@example.com</a>' in html
    assert "1 open, $0.40 in all" in html
    today = html.split("Today so far (UTC)", 1)[1].split("</div>", 1)[0]
    assert "$1.234567 spent in 1 calls" in today and "$0.00 <span class=\"meta\">topped up</span>" in today
    assert 'aria-current="page">30 days' in html
    assert page.headers["Cache-Control"] == "no-store"
    with atomic():
        ledger.release(hold)


def test_the_period_selector(client, auth, calls):
    auth.admin()
    model = make_model()
    user = make_user("old@example.com")
    calls.add(user, model, utcnow() - timedelta(days=20), cost=3_000_000)
    week = client.get("/admin/?days=7").get_data(as_text=True)
    assert 'aria-current="page">7 days' in week and "$3.00" not in week
    quarter = client.get("/admin/?days=90").get_data(as_text=True)
    assert "$3.00" in quarter


@pytest.mark.parametrize("days", ["365", "abc", "<b>"])
def test_another_period_is_a_readable_error(client, auth, days):
    auth.admin()
    page = client.get("/admin/", query_string={"days": days})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert "Choose a period of 7, 30, 90 days." in html and "Showing the last 30 days." in html
    assert "<b>" not in html.split("<main", 1)[-1] or days != "<b>"


def test_the_page_reads_rollups_and_today_alike(client, auth, calls):
    """Rolled-up days and today's live records make the same page as records alone."""
    auth.admin()
    model = make_model()
    user = make_user("steady@example.com")
    now = utcnow()
    for days in range(0, 10):
        calls.add(user, model, now - timedelta(days=days), cost=100_000 + days)
    body = console(client.get("/admin/?days=30"))
    assert "$1.000045" in body  # ten calls, 100,000 to 100,009 micro-dollars
    assert len(dashboards.refresh_rollups(now)) >= 88
    assert console(client.get("/admin/?days=30")) == body


def console(page) -> str:
    """The page's figures, without what changes from one request to the next (the CSRF token, ages).

    The console body ends before </main>: the footer (its language form and CSRF token) is not a figure.
    """
    body = page.get_data(as_text=True).split('<div class="console-body">', 1)[1].split("</main>", 1)[0]
    body = re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token"', body)
    return re.sub(r"\d+ (seconds|minutes|hours|days)( old)?", "", body)


@pytest.mark.one_backend
def test_only_admins_see_it(client, auth):
    auth.user("someone@example.com")
    assert client.get("/admin/").status_code == 403
    assert client.get("/admin/?days=7").status_code == 403
