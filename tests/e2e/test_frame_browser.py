"""The page frame in a real browser: pages fit a phone, dark mode, the focus ring, and the banner
htmx requests that fail show, without one CSP violation on the way."""
import os

import pytest

from portal import catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import User
from portal.pricing import Price
from tests.e2e.conftest import CHROMIUM, fits, log_in_person
from tests.factories import make_user

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")

PHONE = {"width": 390, "height": 844}
EMAIL = "frame@example.com"
SCREENSHOTS = os.environ.get("FRAME_SCREENSHOTS")  # a folder: keep full-page screenshots to look at


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}  # as in production: the banner test sends a bad token


def open_context(browser, **options):
    """A browser context that records console errors (a CSP violation is one)."""
    context = browser.new_context(**{"viewport": PHONE, **options})
    errors = []
    context.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return context, errors


def csp_errors(errors):
    return [e for e in errors if "Content Security Policy" in e]


def shoot(page, name):
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_pages_fit_a_phone(app, gateway, browser, lang):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("echo-1", "echo", Price(input=2_500_000, output=10_000_000))
    make_user(EMAIL, credit=5_000_000)
    context, errors = open_context(browser, locale="zh-CN" if lang == "zh" else "en-US",
                                   extra_http_headers={"Accept-Language": "zh-CN" if lang == "zh" else "en"})
    page = context.new_page()
    try:
        for path in ("/", "/login", "/register", "/pricing", "/status", "/terms", "/contact", "/no-such-page"):
            page.goto(f"{gateway}{path}")
            shoot(page, f"{lang}-phone{path.replace('/', '-') or '-home'}")
            assert fits(page), path
        page.goto(f"{gateway}/")
        assert page.evaluate("document.documentElement.lang") == ("zh-Hans" if lang == "zh" else "en")
        log_in_person(page, gateway, EMAIL)
        for path in ("/dashboard/", "/keys/", "/usage/", "/billing/", "/statement/", "/account/"):
            page.goto(f"{gateway}{path}")
            shoot(page, f"{lang}-phone-in{path.rstrip('/').replace('/', '-')}")
            assert fits(page), path
    finally:
        context.close()
    assert not csp_errors(errors), errors


def test_dark_mode_follows_the_system(app, gateway, browser):
    backgrounds = {}
    for scheme in ("light", "dark"):
        context, errors = open_context(browser, color_scheme=scheme)
        page = context.new_page()
        page.goto(f"{gateway}/pricing")
        backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
        shoot(page, f"{scheme}-pricing")
        context.close()
        assert not csp_errors(errors), errors
    assert backgrounds["light"] == "rgb(245, 246, 248)" and backgrounds["dark"] == "rgb(15, 19, 26)", backgrounds


def test_the_keyboard_focus_is_visible(app, gateway, browser):
    context, errors = open_context(browser, viewport={"width": 1100, "height": 800})
    page = context.new_page()
    try:
        page.goto(f"{gateway}/")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        assert focused == "Skip to content"
        skip = page.evaluate("""(() => { const s = getComputedStyle(document.activeElement);
            const r = document.activeElement.getBoundingClientRect();
            return {outline: s.outlineStyle, width: parseFloat(s.outlineWidth), top: r.top}; })()""")
        assert skip["outline"] == "solid" and skip["width"] >= 2 and skip["top"] >= 0, skip  # on screen
        page.keyboard.press("Tab")  # the home link in the header
        ring = page.evaluate("""(() => { const s = getComputedStyle(document.activeElement);
            return {tag: document.activeElement.tagName, outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; })()""")
        assert ring == {"tag": "A", "outline": "solid", "width": 3}, ring
        page.get_by_role("link", name="Pricing").click()
        page.wait_for_url(f"{gateway}/pricing")
        mouse = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert mouse == "none"  # a click does not draw the ring; the keyboard does
    finally:
        context.close()
    assert not csp_errors(errors), errors


def test_a_failed_htmx_request_shows_a_banner_and_swaps_raise_no_csp_errors(app, gateway, browser):
    make_user(EMAIL, credit=5_000_000)
    context, errors = open_context(browser, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    try:
        log_in_person(page, gateway, EMAIL)
        page.get_by_role("link", name="API keys").click()
        # A swap that works: the new key appears in place, and htmx settles it.
        page.get_by_label("Name", exact=True).fill("laptop")
        page.get_by_role("button", name="Create key").click()
        page.get_by_test_id("new-key").wait_for()
        assert page.get_by_role("alert").filter(has_text="error").count() == 0

        # A request refused (400): a stale CSRF token, in the form and in the htmx header.
        page.evaluate("""document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'stale');
                         document.body.setAttribute('hx-headers', JSON.stringify({'X-CSRFToken': 'stale'}));""")
        page.get_by_label("Name", exact=True).fill("phone")
        page.get_by_role("button", name="Create key").click()
        banner = page.locator("#request-error")
        banner.wait_for()
        assert banner.get_attribute("role") == "alert"
        assert page.evaluate("document.activeElement.id") == "request-error"  # where the keyboard is now
        assert page.evaluate("document.getElementById('main').firstElementChild.id") == "request-error"
        text = banner.inner_text()
        assert "expired" in text or "error 400" in text, text
        shoot(page, "htmx-error")
        banner.get_by_role("button", name="Dismiss").click()
        assert banner.count() == 0

        # The server cannot be reached at all.
        page.route("**/keys/**", lambda route: route.abort())
        page.get_by_role("button", name="Create key").click()
        banner.wait_for()
        assert "Could not reach the server" in banner.inner_text()
    finally:
        context.close()
    assert not csp_errors(errors), errors


def test_the_banner_speaks_the_pages_language(app, gateway, browser):
    user = make_user(EMAIL, credit=5_000_000)
    with atomic():
        db.session.get(User, user.id).locale = "zh"  # chosen earlier, on another device
    context, errors = open_context(browser, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    try:
        log_in_person(page, gateway, EMAIL)
        page.goto(f"{gateway}/keys/")
        page.route("**/keys/**", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
        page.locator("main form[hx-post] button[type=submit]").first.click()
        banner = page.locator("#request-error")
        banner.wait_for()
        assert "无法连接服务器" in banner.inner_text()
        assert banner.locator("button").get_attribute("aria-label") == "关闭"
    finally:
        context.close()
    assert not csp_errors(errors), errors


def test_a_refused_form_focuses_its_error_summary_and_its_links_focus_the_fields(app, gateway, browser):
    context, errors = open_context(browser)
    page = context.new_page()
    try:
        page.goto(f"{gateway}/login")
        page.locator("input[name=email]").evaluate("e => e.removeAttribute('required')")
        page.locator("input[name=password]").evaluate("e => e.removeAttribute('required')")
        page.locator("main form button[type=submit]").first.click()
        summary = page.locator("#error-summary")
        summary.wait_for()
        page.wait_for_function("document.activeElement && document.activeElement.id === 'error-summary'")
        first = summary.locator("a").first
        target = first.get_attribute("href").lstrip("#")
        first.click()
        assert page.evaluate("document.activeElement.id") == target
    finally:
        context.close()
    assert not csp_errors(errors), errors
