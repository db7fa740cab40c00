"""In a real browser, on the operator's phone: the console's parts of rate limits, signals and
failover. Real calls through waitress first: a model served by an upstream nobody listens at
(priority 1) and a fake upstream (priority 2), so every call fails over and the first upstream's
circuit opens; and the key is used from more addresses than allowed, so it is flagged. Then the admin
sets the account's rate limits with a reason and the proxy applies them, sees the flagged key under
Signals, the model's routes with their circuits, and the upstreams list's circuit column; no page
scrolls sideways (wide tables scroll inside their own box)."""
import socket

import pytest

from portal import apikeys, catalog, routes
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, User
from portal.pricing import Price
from tests.e2e.conftest import CHROMIUM, log_in_admin
from tests.e2e.test_key_sharing_browser import fits, inside_the_screen
from tests.factories import make_admin, make_user
from tests.fake_upstream import OPENAI_KEY, FakeUpstream
from tests.web.helpers import call_from

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")

EMAIL = "Heavy.User@Example.com"


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True, "KEY_SHARING_ADDRESSES_PER_DAY": 2, "CIRCUIT_FAILURES": 2,
            "CIRCUIT_COOLDOWN_SECONDS": 3600.0,  # stays open for the whole test
            "UPSTREAM_CONNECT_TIMEOUT": 10.0, "UPSTREAM_FIRST_BYTE_TIMEOUT": 30.0, "UPSTREAM_IDLE_TIMEOUT": 30.0}


@pytest.fixture
def backup():
    server = FakeUpstream().start()
    yield server
    server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


@pytest.fixture
def traffic(app, gateway, backup):
    """Calls that opened `primary`'s circuit and flagged the key; returns the key's hint."""
    with atomic():
        catalog.add_upstream("primary", "openai", f"http://127.0.0.1:{closed_port()}/v1", OPENAI_KEY,
                             allow_private_host=True)
        catalog.add_upstream("backup", "openai", backup.url + "/v1", OPENAI_KEY, allow_private_host=True)
        catalog.set_model("gpt-test", "primary", Price(input=2_000_000, output=8_000_000), upstream_model="gpt-a")
        routes.add_route("gpt-test", "backup", upstream_model="gpt-b", priority=2)
    user = make_user(EMAIL, credit=10_000_000)
    with atomic():
        key, plaintext = apikeys.issue(db.session.get(User, user.id), "scraper")
        hint = key.hint
    for source in ("127.0.0.31", "127.0.0.32", "127.0.0.33"):
        status, _, body = call_from(gateway, plaintext, source, model="gpt-test")
        assert status == 200 and body["choices"][0]["message"]["content"] == "Hello from the fake upstream", body
    assert routes.circuit_states().get("primary") == "open"
    return hint, plaintext


@pytest.fixture
def page(phone_page):
    return phone_page


def test_the_console_shows_limits_signals_and_circuits_on_a_phone(app, gateway, page, traffic):
    hint, plaintext = traffic
    # the configured account default
    assert call_from(gateway, plaintext, model="gpt-test")[1]["x-ratelimit-limit-requests"] == "3000"
    log_in_admin(page, gateway, make_admin("ops@example.com"))
    page.get_by_role("link", name="Console").click()
    console = page.get_by_role("navigation", name="Console")

    # The person's page: set the account's limits, with a reason; shown at once, applied at once.
    console.get_by_role("link", name="Users").click()
    page.get_by_label("Email contains").fill("heavy.user")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=EMAIL).click()
    page.get_by_role("heading", name=EMAIL).wait_for()
    assert fits(page)
    limits = page.locator("#limits")
    limits.get_by_label("Applies to").select_option(label="the account (all its keys together)")
    limits.get_by_label("Requests per minute").fill("120")
    limits.get_by_label("Tokens per minute").fill("50,000")
    limits.get_by_label("Reason").fill("Bursts that starve other customers")
    limits.get_by_role("button", name="Set limits").click()
    page.get_by_text(f"Limits of the account of {EMAIL}: requests/min 120, tokens/min 50,000, "
                     "calls at once default.").wait_for()
    assert "Account: requests/min 120, tokens/min 50,000, calls at once default." in (
        page.get_by_test_id("limits-now").inner_text())
    assert fits(page)
    db.session.rollback()
    account = db.session.scalar(db.select(Account).join(User).where(User.email == EMAIL))
    assert (account.rpm_limit, account.tpm_limit, account.concurrency_limit) == (120, 50_000, None)
    assert call_from(gateway, plaintext, model="gpt-test")[1]["x-ratelimit-limit-requests"] == "120"

    # A number that is not one: the page again (not a 500) with the error by the form, nothing changed.
    limits = page.locator("#limits")
    limits.get_by_label("Requests per minute").fill("lots")
    limits.get_by_label("Reason").fill("typo")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        limits.get_by_role("button", name="Set limits").click()
    assert answer.value.status == 422
    error = page.locator("#limits-card").get_by_test_id("action-error")
    assert "'lots' is not a whole number" in error.inner_text()
    assert fits(page) and inside_the_screen(page, error)
    db.session.rollback()
    assert db.session.get(Account, account.id).rpm_limit == 120

    # Signals: the key used from three addresses is listed, with its owner.
    console.get_by_role("link", name="Signals").click()
    page.get_by_role("heading", name="Signals", exact=True).wait_for()
    flagged = page.locator("#flagged-keys")
    row = flagged.get_by_role("row").filter(has_text=hint)
    assert EMAIL in row.inner_text() and "scraper" in row.inner_text() and "live" in row.inner_text()
    assert row.get_by_role("cell").nth(2).inner_text() == "3"
    assert fits(page)

    # The model's page: both routes, in order, the first one's circuit open.
    console.get_by_role("link", name="Models").click()
    page.get_by_role("link", name="gpt-test").click()
    page.get_by_role("heading", name="Upstreams").wait_for()
    primary, second = page.get_by_test_id("route-primary"), page.get_by_test_id("route-backup")
    assert [c.inner_text() for c in primary.get_by_role("cell").all()[:4]] == ["gpt-a", "1", "1", "open"]
    assert [c.inner_text() for c in second.get_by_role("cell").all()[:4]] == ["gpt-b", "2", "1", "closed"]
    assert fits(page)

    # The upstreams list: the circuit column.
    console.get_by_role("link", name="Upstreams").click()
    page.get_by_role("heading", name="Upstreams").wait_for()
    assert page.get_by_test_id("circuit-primary").inner_text() == "open"
    assert page.get_by_test_id("circuit-backup").inner_text() == "closed"
    assert page.get_by_role("columnheader", name="Circuit").count() == 1
    assert fits(page)
