"""Layout details of static/css/app.css, measured in a real browser: a long model id in the calls table
wraps on a desktop so the cost column stays in view; the dashboard's narrow chart keeps its phone size
on a wide screen; a long option does not widen the usage filter on a phone; the quickstart's code scrolls
inside its own block. In the light and the dark colour scheme."""
import pytest

from portal import ledger, users
from portal.database import atomic
from portal.models import EntryKind
from tests.e2e.conftest import CHROMIUM, fits, log_in_person
from tests.factories import make_user
from tests.web.test_usage import make_calls

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make browser installs it)")

EMAIL = "person@example.com"
LONG_MODEL = "a-model-with-a-very-long-identifier-from-a-vendor-that-likes-dates-2025-10-01-preview"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_desktop_calls_table_and_narrow_chart(app, gateway, browser, scheme):
    make_user(EMAIL)
    with atomic():
        ledger.credit(users.find_user(EMAIL).account.id, 20_000_000, EntryKind.GRANT, memo="test credit")
    make_calls(EMAIL, 2, "laptop", LONG_MODEL)
    context = browser.new_context(viewport={"width": 1100, "height": 900}, color_scheme=scheme)
    try:
        page = context.new_page()
        log_in_person(page, gateway, EMAIL)
        chart = page.locator("svg#daily-spend")
        assert "narrow" in chart.get_attribute("class")
        assert chart.bounding_box()["width"] <= 30 * 16 + 1  # .plot.narrow: 30rem, not the card's width

        page.goto(f"{gateway}/usage/")
        table = page.locator("table.calls")
        wrap = page.locator(".table-wrap:has(table.calls)")
        assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth"), "the calls table scrolls sideways"
        cost = table.locator("tbody tr").first.locator("td[data-label=Cost]")
        box, edge = cost.bounding_box(), wrap.bounding_box()
        assert cost.is_visible() and box["x"] + box["width"] <= edge["x"] + edge["width"] + 1
        model = table.locator("tbody tr").first.locator("td[data-label=Model] code")
        assert model.inner_text() == LONG_MODEL  # wrapped, not cut
        assert fits(page), page.url
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_filters_and_snippets(app, gateway, browser, scheme):
    make_user(EMAIL, credit=20_000_000)
    make_calls(EMAIL, 1, "k" * 60, LONG_MODEL)
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme)
    try:
        page = context.new_page()
        log_in_person(page, gateway, EMAIL)
        page.goto(f"{gateway}/usage/")
        for name in ("key", "model"):
            box = page.locator(f"form.filters select[name={name}]").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, name
        assert fits(page), page.url

        page.goto(f"{gateway}/quickstart")
        pre = page.locator(".snippet pre").first
        assert pre.evaluate("el => el.scrollWidth > el.clientWidth"), "the curl line should need scrolling here"
        assert pre.evaluate("el => getComputedStyle(el).overflowX") == "auto"
        box = pre.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert fits(page), page.url
        # The code's colours keep contrast in both schemes (the same pair: --pre-ink on --pre-bg).
        colours = pre.evaluate("el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]")
        assert colours[0] != colours[1]
    finally:
        context.close()
