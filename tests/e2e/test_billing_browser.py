"""Top up end to end in a real browser: the billing page, the fake Stripe's hosted page, the webhook, back.

The fake's hosted page (GET /pay/<session>) marks the session paid, delivers a signed
checkout.session.completed to the app's /stripe/webhook, and redirects to the success URL; the
balance and the receipt link on our pages come from that webhook.
"""
import pytest

from portal import ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, EntryKind, Payment
from tests.conftest import stripe_settings
from tests.e2e.conftest import CHROMIUM
from tests.factories import PASSWORD, make_user, open_checkout
from tests.fake_stripe import deliver

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


@pytest.fixture
def site(app, gateway, fake_stripe):
    """The served app, with links back from Stripe pointing at it and the fake delivering webhooks to it."""
    app.config["PUBLIC_URL"] = gateway  # read per request: success and cancel URLs lead back here
    fake_stripe.webhook_url = f"{gateway}/stripe/webhook"
    return gateway


def log_in(page, site):
    page.goto(f"{site}/login")
    page.get_by_label("Email").fill("person@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def newest_payment() -> Payment:
    db.session.rollback()
    return db.session.scalars(db.select(Payment).order_by(Payment.id.desc())).first()


def test_top_up_through_checkout(app, site, browser, fake_stripe):
    user = make_user(credit=500_000)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    log_in(page, site)
    # The balance is below the alert threshold: the dashboard points to billing.
    page.get_by_test_id("topup-hint").get_by_role("link", name="Top up").click()
    page.get_by_role("heading", name="Billing").wait_for()
    assert page.get_by_test_id("balance").inner_text() == "$0.50"

    # htmx posts the preset and follows HX-Redirect to the hosted page, which comes back here.
    page.get_by_role("button", name="$20.00").click()
    page.get_by_role("heading", name="Thank you").wait_for()
    payment = newest_payment()
    assert page.url == f"{site}/billing/success?session_id={payment.checkout_session_id}"
    assert page.get_by_test_id("confirmed").inner_text().startswith("Your payment of $20.00 is confirmed.")
    assert page.get_by_test_id("balance").inner_text() == "$20.50"  # credited by the webhook

    page.get_by_role("link", name="Back to billing").click()
    page.get_by_role("heading", name="Past top-ups").wait_for()
    assert page.get_by_test_id("balance").inner_text() == "$20.50"
    row = page.get_by_test_id(f"payment-{payment.id}")
    assert "$20.00" in row.inner_text() and "paid" in row.inner_text()
    receipt = row.get_by_role("link", name="Receipt").get_attribute("href")
    assert receipt == f"https://pay.stripe.com/receipts/{payment.checkout_session_id}"
    assert db.session.get(Account, user.account.id).balance == 20_500_000
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_top_up_on_a_phone_without_javascript(app, site, browser, fake_stripe):
    """A plain form post and a 303 to Stripe: the page's CSP must let the form go there."""
    make_user()
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    log_in(page, site)
    page.get_by_role("link", name="Billing").click()
    page.get_by_role("heading", name="Past top-ups").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_label("Other amount, USD").fill("12.34")
    page.get_by_role("button", name="Top up", exact=True).click()
    page.get_by_role("heading", name="Thank you").wait_for()
    assert page.get_by_test_id("balance").inner_text() == "$12.34"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_role("link", name="Back to billing").click()
    page.get_by_role("heading", name="Past top-ups").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.get_by_role("link", name="Receipt").count() == 1
    context.close()


def test_money_pages_fit_a_phone(app, site, browser, fake_stripe):
    """Billing, statement and refund pages with long Stripe ids and memos stay inside a phone's width."""
    user = make_user(credit=2_000_000)
    for cents in (2_000, 123_456):
        session_id = open_checkout(user, cents)
        fake_stripe.pay(session_id, method="wechat_pay")
        assert deliver(f"{site}/stripe/webhook", fake_stripe.session_event("checkout.session.completed",
                                                                           session_id)).status_code == 200
    with atomic():
        ledger.credit(user.account.id, 1, EntryKind.GRANT, memo="a goodwill credit with a rather long reason " * 3,
                      reference="support-ticket-" + "x" * 60)
        ledger.settle(ledger.hold(user.account.id, 10_000), 9_999, memo="claude-sonnet req_" + "a" * 32)
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    log_in(page, site)
    for path in ("/dashboard/", "/billing/", "/statement/", "/billing/refund/", "/legal/refunds", "/usage/",
                 "/keys/", "/account/"):
        page.goto(site + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
    context.close()
