"""In a real browser, on a phone, with JavaScript and without: a key's owner lowers its requests per
minute in the key's limits form, and the proxy holds the key to that at once; trying to raise it
above what the operator allows is refused with a readable error next to the field (422, not a 500),
and nothing is changed."""
import http.client
import json
from urllib.parse import urlsplit

import pytest

from portal import apikeys
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, User
from tests.e2e.conftest import CHROMIUM, fits
from tests.e2e.test_key_sharing_browser import PHONE, inside_the_screen, log_in
from tests.factories import make_model, make_user

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")

OPERATOR_RPM = 60


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True, "RATE_LIMIT_RPM_PER_KEY": OPERATOR_RPM}


@pytest.fixture
def key(app):
    make_model("echo-1")
    user = make_user("owner@example.com", credit=5_000_000)
    with atomic():
        key, plaintext = apikeys.issue(db.session.get(User, user.id), "laptop")
        key_id = key.id
    return key_id, plaintext


def requests_limit(gateway: str, plaintext: str) -> str:
    """The per-minute request limit the proxy reports for the key (the header the SDKs read)."""
    url = urlsplit(gateway)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {plaintext}",
                                                              "Content-Type": "application/json"},
                     body=json.dumps({"model": "echo-1", "max_tokens": 16,
                                      "messages": [{"role": "user", "content": "hello"}]}))
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        return response.getheader("x-ratelimit-limit-requests")
    finally:
        conn.close()


def own_limits(key_id: int) -> tuple:
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    return key.max_rpm, key.max_tpm


def limits_cell(page, key_id: int) -> str:
    """What the keys list says of the key's limits."""
    return page.locator(f"#key-{key_id}").get_by_role("cell").nth(4).inner_text().strip()


def submit(page, expected_status: int) -> None:
    with page.expect_response(lambda r: r.request.method == "POST" and "/limits" in r.url) as answer:
        page.get_by_role("button", name="Save limits").click()
    assert answer.value.status == expected_status
    page.wait_for_load_state("load")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_an_owner_lowers_a_key_limit_and_cannot_raise_it(app, gateway, browser, key, javascript):
    key_id, plaintext = key
    assert requests_limit(gateway, plaintext) == str(OPERATOR_RPM)
    context = browser.new_context(viewport=PHONE, java_script_enabled=javascript)
    page = context.new_page()
    log_in(page, gateway)
    page.get_by_role("link", name="API keys").click()
    page.locator(f"#key-{key_id}").get_by_role("link", name="Limits").click()
    page.get_by_role("heading", name="Limits for “laptop”").wait_for()
    assert fits(page)
    rpm = page.get_by_label("Requests per minute")
    assert rpm.get_attribute("placeholder") == f"{OPERATOR_RPM:,}"  # what applies when left empty

    # Lower it: saved, back to the keys page, and the proxy holds the key to it on the next call.
    rpm.fill("5")
    submit(page, 303)
    page.get_by_role("heading", name="API keys").wait_for()
    assert limits_cell(page, key_id) == "5 requests/min"
    assert own_limits(key_id) == (5, None)
    assert requests_limit(gateway, plaintext) == "5"

    # Raise it above the operator's: refused, said next to the field, nothing changed.
    page.locator(f"#key-{key_id}").get_by_role("link", name="Limits").click()
    rpm = page.get_by_label("Requests per minute")
    assert rpm.input_value() == "5"
    rpm.fill("100")
    submit(page, 422)
    error = page.locator("#max_rpm-error")
    assert error.inner_text() == (f"Enter a whole number from 1 to {OPERATOR_RPM:,}, "
                                  f"or leave it empty for the platform's limit ({OPERATOR_RPM:,}).")
    assert rpm.get_attribute("aria-invalid") == "true" and rpm.input_value() == "100"
    assert fits(page) and inside_the_screen(page, error)
    assert own_limits(key_id) == (5, None)

    # Zero (the box is type=number: a phone offers digits only) is refused the same way.
    page.get_by_label("Requests per minute").fill("0")
    submit(page, 422)
    assert page.locator("#max_rpm-error").inner_text().startswith("Enter a whole number from 1 to")
    assert own_limits(key_id) == (5, None)

    # Emptied: back to the platform's limit.
    page.get_by_label("Requests per minute").fill("")
    submit(page, 303)
    page.get_by_role("heading", name="API keys").wait_for()
    assert limits_cell(page, key_id) == "none"
    assert own_limits(key_id) == (None, None)
    assert requests_limit(gateway, plaintext) == str(OPERATOR_RPM)
    context.close()
