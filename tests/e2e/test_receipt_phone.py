"""A receipt with every class, fee, tier and long context, on a phone (390 px) in a real browser."""
import pytest

from tests.e2e.conftest import CHROMIUM
from tests.factories import PASSWORD, make_user
from tests.web.test_receipt_classes import rich_call


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make browser installs it)")
def test_receipt_fits_a_phone(app, gateway, browser):
    make_user(credit=10_000_000)
    request_id = rich_call()
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(f"{gateway}/login")
        page.get_by_label("Email").fill("person@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("heading", name="Dashboard").wait_for()
        page.goto(f"{gateway}/usage/{request_id}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        table = page.get_by_role("table", name="How the charge adds up")
        assert table.get_by_role("rowheader").count() == 11  # ten lines and the exact total
        assert page.get_by_role("heading", name="Notes on this charge").is_visible()
    finally:
        context.close()
