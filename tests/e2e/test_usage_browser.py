"""Issue 12, "see your money", in a real browser: on a desktop and a 390-px phone, with JavaScript on
and off, in English and Chinese. Day one's dashboard says what to do; after some calls the usage page
shows the totals and two charts with axis labels, the filter works (htmx swap, or a plain GET form),
and nothing scrolls sideways."""
import pytest

from portal import ledger, users
from portal.database import atomic
from portal.models import EntryKind
from tests.e2e.conftest import CHROMIUM, fits, log_in_person, reload
from tests.factories import make_user
from tests.web.test_usage import make_calls

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make browser installs it)")

WORDS = {
    "en": {"steps": "Make your first call", "quickstart": "Quickstart", "totals": "Totals",
           "by_model": "Spend by model", "by_key": "Spend by key", "filter": "Filter", "key": "Key"},
    "zh": {"steps": "发起第一次调用", "quickstart": "快速上手", "totals": "合计",
           "by_model": "按模型统计消费", "by_key": "按密钥统计消费", "filter": "筛选", "key": "密钥"},
}


EMAIL = "person@example.com"


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
@pytest.mark.parametrize("width", [1100, 390])
def test_see_your_money(app, gateway, browser, width, js, lang):
    words = WORDS[lang]
    make_user(EMAIL)  # no key, no money, no calls: day one
    context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=js)
    errors = []
    try:
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        log_in_person(page, gateway, EMAIL)
        if lang == "zh":
            page.get_by_role("button", name="简体中文").click()
            page.get_by_role("heading", name="控制台").wait_for()

        # Day one: what to do next, not a blank chart.
        steps = page.get_by_test_id("first-steps")
        assert steps.get_by_role("heading", name=words["steps"]).is_visible()
        assert steps.get_by_role("link", name=words["quickstart"]).is_visible()
        assert steps.get_by_test_id("first-topup").is_visible()  # the balance is zero
        assert page.locator("svg.plot").count() == 0
        assert fits(page), page.url

        with atomic():
            ledger.credit(users.find_user(EMAIL).account.id, 20_000_000, EntryKind.GRANT, memo="test credit")
        make_calls(EMAIL, 3, "alpha", "model-a")
        make_calls(EMAIL, 2, "beta", "a-model-with-a-rather-long-name-that-will-not-fit-on-a-phone")

        reload(page)
        daily = page.locator("svg#daily-spend")
        daily.wait_for()
        assert daily.locator("text.tick").count() >= 3 and daily.locator("text.label").count() >= 2
        assert fits(page), page.url

        page.goto(f"{gateway}/usage/")
        totals = page.get_by_role("region", name=words["totals"])
        assert totals.get_by_test_id("total-calls").inner_text() == "5"
        assert totals.get_by_test_id("total-cost").is_visible()
        assert totals.get_by_test_id("total-input").is_visible() and totals.get_by_test_id("total-output").is_visible()
        for chart_id, title in (("spend-by-model", words["by_model"]), ("spend-by-key", words["by_key"])):
            chart = page.locator(f"svg#{chart_id}")
            assert chart.is_visible() and chart.locator("title").first.text_content() == title
            assert chart.locator("text.tick").count() >= 3  # the x axis, labelled
            assert chart.locator("text.label").count() == 2 and chart.locator("text.total").is_visible()
            box = chart.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width
        assert page.locator("svg#spend-by-model text.label", has_text="…").count() == 1  # the long name, cut
        assert fits(page), page.url

        # The same filter for the table, the totals and the charts.
        select = page.locator("form.filters select[name=key]")
        assert words["key"] in page.locator("form.filters label:has(select[name=key])").inner_text()
        select.select_option(label=next(o for o in select.locator("option").all_inner_texts() if o.startswith("beta")))
        if not js:
            page.get_by_role("button", name=words["filter"]).click()
        page.wait_for_url("**/usage/?key=*")
        page.get_by_test_id("total-calls").filter(has_text="2").wait_for()
        assert page.locator("svg#spend-by-key text.label").count() == 1
        assert fits(page), page.url
    finally:
        context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors
