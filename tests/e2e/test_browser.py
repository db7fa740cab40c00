"""End to end in a real browser (Debian's chromium driven by Playwright), against the app served by waitress.

Register, open the verification link from the outbox, log in, create a key, call the proxy with it,
see the call and its receipt, revoke the key, and re-consent after a significant terms change.
"""
import pytest
from openai import AuthenticationError, OpenAI

from portal import catalog
from portal.database import atomic
from portal.pricing import Price
from tests.web.helpers import last_link, publish_terms

from tests.e2e.conftest import CHROMIUM

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_newcomer_journey(app, gateway, page, tmp_path):
    publish_terms("v1")
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("echo-1", "echo", Price(input=2_500_000, output=10_000_000))

    # Register and verify from the outbox.
    page.goto(f"{gateway}/")
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Email").fill("newcomer@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_label("I accept the terms of service").check()
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    link = last_link(app, "newcomer@example.com")
    page.goto(link.replace("http://localhost", gateway))
    assert "newcomer@example.com is verified" in page.content()
    assert "Your balance is $1.00" in page.content()  # the development default welcome credit
    page.get_by_label("Email").fill("newcomer@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()

    # Create a key (htmx swaps the keys section in place) and call the proxy with it.
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("tg_") and "Copy it now" in page.content()
    page.screenshot(path=str(tmp_path / "keys.png"), full_page=True)
    client = OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hello browser"}])
    assert reply.choices[0].message.content == "Echo: hello browser"

    # See the call and its receipt.
    page.get_by_role("link", name="Usage").click()
    page.get_by_role("cell", name="echo-1").wait_for()
    page.locator("table.calls a").first.click()
    page.get_by_role("heading", name="Receipt").wait_for()
    receipt = page.content()
    assert "round_half_up(" in receipt and "$0.000035" in receipt  # 2 in x $2.50 + 3 out x $10 per million

    # Revoke the key; the proxy refuses it at once.
    page.get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Revoke key").click()
    page.get_by_role("cell", name="revoked", exact=False).wait_for()
    with pytest.raises(AuthenticationError):
        client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "again"}])

    # A significant terms change: the next page is the consent page until accepted.
    publish_terms("v2", significant=True)
    page.get_by_role("link", name="Dashboard").click()
    page.get_by_role("heading", name="Our terms have changed").wait_for()
    page.get_by_role("button", name="I accept these terms").click()
    page.get_by_role("heading", name="Dashboard").wait_for()
    page.screenshot(path="/tmp/e2e-dashboard.png", full_page=True)


def test_pages_fit_a_phone(app, gateway, browser):
    publish_terms("v1")
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    for path in ("/", "/pricing", "/register", "/login", "/terms"):
        page.goto(gateway + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
    context.close()
