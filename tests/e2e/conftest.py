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
