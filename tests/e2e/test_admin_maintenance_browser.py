"""In a real browser: an admin turns maintenance on in the console; API calls through the openai SDK
get 503 with Retry-After while the console (and the portal, with its banner) still works; turning it
off restores the calls."""
import openai
import pytest
from openai import OpenAI

from portal import apikeys
from portal.database import atomic
from tests.e2e.conftest import CHROMIUM, log_in_admin
from tests.factories import make_admin, make_model, make_user

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")


@pytest.fixture
def page(phone_page):
    return phone_page


def test_admin_turns_maintenance_on_and_off(app, gateway, page, tmp_path):
    make_model("echo-1")
    user = make_user("caller@example.com", credit=5_000_000)
    with atomic():
        _, key = apikeys.issue(user, "sdk")
    admin = make_admin("ops@example.com")
    client = OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=20)
    hello = [{"role": "user", "content": "hello"}]
    assert client.chat.completions.create(model="echo-1", messages=hello).choices[0].message.content == "Echo: hello"

    # Log in with two-factor and open the console's site page.
    log_in_admin(page, gateway, admin)
    page.goto(f"{gateway}/admin/site")
    page.get_by_role("heading", name="Maintenance").wait_for()

    # Turn it on with a message and a reason; the confirmation box is required.
    form = page.locator("#maintenance-on")
    form.get_by_label("Message for users").fill("Moving to a new server.")
    form.get_by_label("Reason").fill("server move")
    form.get_by_label("I understand").check()
    form.get_by_role("button", name="Turn maintenance on").click()
    page.get_by_text("Maintenance is on: API calls are refused").wait_for()
    banner = page.get_by_test_id("maintenance-banner")
    assert "Moving to a new server." in banner.inner_text()
    page.screenshot(path=str(tmp_path / "maintenance-on.png"), full_page=True)

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="echo-1", messages=hello)
    assert caught.value.status_code == 503 and caught.value.response.headers["Retry-After"] == "300"
    assert "Moving to a new server." in caught.value.response.json()["error"]["message"]

    # The console still works: another page, then back, and turn it off.
    page.get_by_role("link", name="Audit log").click()
    page.get_by_role("cell", name="maintenance.on").wait_for()
    page.goto(f"{gateway}/admin/site")
    off = page.locator("#maintenance-off")
    off.get_by_label("Reason").fill("done")
    off.get_by_role("button", name="Turn maintenance off").click()
    page.get_by_text("Maintenance is off: the API answers calls again.").wait_for()
    assert page.get_by_test_id("maintenance-banner").count() == 0

    assert client.chat.completions.create(model="echo-1", messages=hello).choices[0].message.content == "Echo: hello"
