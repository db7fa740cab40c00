"""The browser for end-to-end tests: Debian's chromium driven by Playwright, one per session.

Browser downloads are impossible here, so Playwright is pointed at the system's chromium.
"""
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def phone_page(browser):
    """A page the size of a phone (the operator's, often); fails the test on a CSP violation."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def reload(page):
    """Reload the page once the navigation in front of it has loaded.

    A click that posts a form returns when the next page has committed, not loaded; Chromium may still
    be swapping that page's renderer then, and a reload at that moment fails with "Not attached to an
    active page" (seen in CI on a loaded machine). Waiting for the load closes that window.
    """
    page.wait_for_load_state("load")
    return page.reload()


def log_in_admin(page, gateway: str, admin) -> None:
    """Log an admin in as a person does: the password, then the code from their authenticator."""
    from tests.factories import PASSWORD, totp_code

    page.goto(f"{gateway}/login")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Code from your authenticator app").fill(totp_code(admin.id))
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("link", name="Console").wait_for()


class Site:
    """The app served in a thread, with the registry's data (tests/e2e/pages.py) made once for a module."""

    def __init__(self, app, base: str, world):
        self.app, self.base, self.world = app, base, world


@pytest.fixture(scope="module")
def site(database, tmp_path_factory):
    """One app and one set of demo-like data for a whole module of page checks (building them per test
    would cost more than the checks). CSRF is on, as in production: forms are sent by the browser."""
    from portal import notices
    from portal.extensions import db
    from portal.views import auth
    from tests.conftest import forget_redis_keys, make_app, served_in_thread
    from tests.e2e import pages

    app = make_app(database, tmp_path_factory.mktemp("site"), WTF_CSRF_ENABLED=True)
    limit, auth.REGISTER_LIMIT_IP = auth.REGISTER_LIMIT_IP, 10_000  # "check your inbox" is a sign-up per context
    try:
        with app.app_context():
            world = pages.build_world()
            with served_in_thread(app) as server:
                yield Site(app, f"http://127.0.0.1:{server.effective_port}", world)
            notices.drain()
            app.extensions["tollgate.gateway"].close()
            db.session.remove()
            db.engine.dispose()
            forget_redis_keys(app)
    finally:
        auth.REGISTER_LIMIT_IP = limit


def log_in_person(page, gateway: str, email: str = "person@example.com") -> None:
    """Log a person in with the factories' password and wait for their dashboard. By the inputs' ids,
    so in any language (the labels are the page's) and with JavaScript off too."""
    from tests.factories import PASSWORD

    page.goto(f"{gateway}/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/dashboard/")


def fits(page) -> bool:
    """No sideways scrolling of the page, once it is laid out with its stylesheet."""
    page.wait_for_load_state("load")
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
