"""In a real browser, on a phone: a key used from more addresses than allowed in a day is flagged; its
owner sees the warning on the API keys page, presses "Rotate this key", copies the new key (shown
once), and from then on the old key is refused by /v1 while the new one works. With and without
JavaScript. The calls come from distinct loopback addresses through real waitress, as in
tests/web/test_key_sharing.py."""
import time

import pytest

from portal import apikeys
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, User
from tests.e2e.conftest import CHROMIUM, fits, reload
from tests.factories import PASSWORD, make_model, make_user
from tests.web.helpers import call_from

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")

PHONE = {"width": 390, "height": 844}
EMAIL = "owner@example.com"


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True, "KEY_SHARING_ADDRESSES_PER_DAY": 2}


def flag_by_use(gateway: str, key: str, key_id: int) -> None:
    """Use the key from three addresses (more than 2): the proxy flags it as shared."""
    for source in ("127.0.0.21", "127.0.0.22", "127.0.0.23"):
        status, _, body = call_from(gateway, key, source)
        assert status == 200, body
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).sharing_flagged_at is not None


@pytest.fixture
def flagged_key(app, gateway):
    make_model("echo-1")
    user = make_user(EMAIL, credit=5_000_000)
    with atomic():
        key, plaintext = apikeys.issue(db.session.get(User, user.id), "laptop")
        key_id = key.id
    flag_by_use(gateway, plaintext, key_id)
    return key_id, plaintext


def phone_context(browser, **options):
    context = browser.new_context(viewport=PHONE, **options)
    errors = []
    context.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return context, errors


def log_in(page, gateway: str) -> None:
    page.goto(f"{gateway}/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def inside_the_screen(page, locator) -> bool:
    """The element, scrolled to, lies within the phone's width: readable and pressable without
    scrolling sideways (inside a table's own scroll box or otherwise)."""
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.evaluate("window.innerWidth")


def clipboard(page, deadline: float = 10.0) -> str:
    """What the page put on the clipboard, once it has (the copy is asynchronous)."""
    end = time.monotonic() + deadline
    text = ""
    while time.monotonic() < end:
        text = page.evaluate("navigator.clipboard.readText()")
        if text:
            return text
        page.wait_for_timeout(100)
    return text


def test_a_flagged_key_is_rotated_from_its_page_on_a_phone(app, gateway, browser, flagged_key, tmp_path):
    key_id, old = flagged_key
    context, errors = phone_context(browser, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    log_in(page, gateway)
    page.get_by_role("link", name="API keys").click()

    warning = page.get_by_test_id("key-sharing")
    warning.wait_for()
    assert "“laptop”" in warning.inner_text() and "may be shared." in warning.inner_text()
    assert "3 different addresses" in warning.inner_text()
    assert fits(page)
    assert inside_the_screen(page, warning), "the warning runs off the side of a phone"
    rotate = warning.get_by_role("button", name="Rotate this key")
    assert inside_the_screen(page, rotate)
    # (No screenshot before the swap: Playwright's leaves style="" on inputs, which htmx's settle then
    # copies over and the CSP reports.)

    rotate.click()
    shown = page.get_by_test_id("new-key")
    shown.wait_for()
    new = shown.inner_text().strip()
    assert new.startswith("tg_") and new != old
    assert "Copy it now: it is shown only this once." in page.content()
    assert page.get_by_test_id("key-sharing").count() == 0  # the new key is not flagged
    assert fits(page)
    copy = page.locator("button[data-copy='new-key']")
    assert inside_the_screen(page, copy)
    copy.click()
    assert clipboard(page) == new
    page.screenshot(path=str(tmp_path / "rotated.png"), full_page=True)

    # The old key is refused at once, the new one works.
    status, _, body = call_from(gateway, old)
    assert status == 401 and body["error"]["type"] == "invalid_request_error", body
    status, _, body = call_from(gateway, new)
    assert status == 200 and body["choices"][0]["message"]["content"] == "Echo: hello", body

    # Shown once: a reload lists both keys (the old one revoked) and shows no plaintext.
    reload(page)
    page.get_by_role("heading", name="API keys").wait_for()
    assert new not in page.content() and old not in page.content()
    assert page.locator(f"#key-{key_id}").get_attribute("class") == "revoked"
    assert fits(page)
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_rotating_works_without_javascript(app, gateway, browser, flagged_key):
    key_id, old = flagged_key
    context, _ = phone_context(browser, java_script_enabled=False)
    page = context.new_page()
    log_in(page, gateway)
    page.get_by_role("link", name="API keys").click()
    page.get_by_test_id("key-sharing").get_by_role("button", name="Rotate this key").click()
    new = page.get_by_test_id("new-key").inner_text().strip()
    assert new.startswith("tg_") and new != old
    assert fits(page)
    assert call_from(gateway, old)[0] == 401
    assert call_from(gateway, new)[0] == 200
    context.close()
