"""In a real browser: an admin logs in with two-factor, finds a user by email and suspends them; the
user's key is refused on the very next call through the official openai SDK, and the user got
the mail with the reason. CSRF is on, as in production."""
import pytest
from openai import OpenAI, PermissionDeniedError

from portal import apikeys, catalog, users
from portal.database import atomic
from portal.pricing import Price
from tests.e2e.conftest import CHROMIUM, log_in_admin
from tests.factories import make_admin, make_user
from tests.web.helpers import outbox

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


@pytest.fixture
def page(phone_page):
    return phone_page


def test_an_admin_suspends_a_user_and_their_key_stops_at_once(app, gateway, page, tmp_path):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("echo-1", "echo", Price(input=1_000_000, output=2_000_000))
    admin = make_admin("ops@example.com")
    make_user("Mallory@Example.com", credit=5_000_000)
    with atomic():
        _, plaintext = apikeys.issue(users.find_user("mallory@example.com"), "scraper")
    client = OpenAI(base_url=f"{gateway}/v1", api_key=plaintext, max_retries=0)
    reply = client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "before"}])
    assert reply.choices[0].message.content == "Echo: before"

    # The admin logs in: password, then the code from their authenticator.
    log_in_admin(page, gateway, admin)
    page.get_by_role("link", name="Console").click()

    # Find the user by part of their address, in any case, and open their page.
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Users").click()
    page.get_by_label("Email contains").fill("MALLORY")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Mallory@Example.com").click()
    page.get_by_role("heading", name="Mallory@Example.com").wait_for()
    assert page.get_by_test_id("status").inner_text() == "active"

    # Suspend, with a reason and the confirmation.
    suspend = page.locator("#suspend")
    suspend.get_by_label("Reason").fill("Scraping other people's data")
    suspend.get_by_label("Suspend this account now").check()
    suspend.get_by_role("button", name="Suspend").click()
    page.get_by_text("Suspended Mallory@Example.com: Scraping other people's data.").wait_for()
    assert page.get_by_test_id("status").inner_text() == "suspended"
    page.screenshot(path=str(tmp_path / "user.png"), full_page=True)

    # The very next call is refused.
    with pytest.raises(PermissionDeniedError, match="suspended"):
        client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "after"}])

    # The user was mailed the reason and where to appeal.
    [mail] = [m for m in outbox(app) if m["To"] == "Mallory@Example.com"]
    assert mail["Subject"] == "Your account is suspended"
    assert "Scraping other people's data" in mail.get_content() and "/contact" in mail.get_content()
