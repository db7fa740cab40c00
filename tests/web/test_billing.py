"""The billing page: balance, expiry, 12 months paid, past top-ups; starting Checkout at the fake Stripe;
the success and cancel pages; the low-balance form; the dashboard's pointer to billing."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import ledger, topups, users
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, EntryKind, Payment, User, UserStatus, utcnow
from tests.conftest import stripe_settings
from tests.factories import make_user
from tests.fake_stripe import SECRET_KEY, parse_form

HX = {"HX-Request": "true"}
PUBLIC = "https://ai.example.com"
AMOUNT_HELP = "Enter an amount in US dollars between $5 and $500, like 20 or 12.50."


@pytest.fixture
def settings():
    """Configuration on top of the fake Stripe's; tests parametrize it."""
    return {}


@pytest.fixture
def app_config(fake_stripe, settings):
    return {**stripe_settings(fake_stripe), "PUBLIC_URL": PUBLIC, "TRUSTED_HOSTS": ["localhost", "ai.example.com"],
            **settings}


def checkout_requests(fake) -> list[dict]:
    return [parse_form(r["body"]) for r in fake.requests
            if r["method"] == "POST" and r["path"] == "/v1/checkout/sessions"]


def payments() -> list[Payment]:
    db.session.rollback()
    return list(db.session.scalars(select(Payment).order_by(Payment.id)))


def add_payment(account_id, amount, *, status="paid", days_ago=1, **fields) -> Payment:
    """A payment as the webhook would leave it; paid ones are credited as a top-up too."""
    at = utcnow() - timedelta(days=days_ago)
    with atomic():
        payment = Payment(account_id=account_id, source="stripe", status=status, amount=amount,
                          checkout_session_id=fields.pop("checkout_session_id", f"cs_test_{amount}_{days_ago}"),
                          created_at=at, paid_at=at if status == "paid" else None, **fields)
        db.session.add(payment)
        if status == "paid":
            ledger.credit(account_id, amount, EntryKind.TOPUP, memo="top-up", reference=f"test:{amount}:{days_ago}",
                          topup_at=at)
    return payment


# -- the page -------------------------------------------------------------------------------------

def test_page_shows_balance_expiry_presets_paid_in_a_year_and_receipts(client, auth):
    user = auth.user()
    account_id = user.account.id
    add_payment(account_id, 20_000_000, days_ago=400, method="card", receipt_url="https://pay.stripe.com/receipts/old")
    add_payment(account_id, 50_000_000, days_ago=30, method="alipay", refunded=10_000_000, disputed=5_000_000,
                dispute_status="needs_response", receipt_url="https://pay.stripe.com/receipts/r1",
                invoice_url="https://invoice.stripe.com/i/in_1")
    add_payment(account_id, 10_000_000, days_ago=2, method="wechat_pay", receipt_url="https://pay.stripe.com/receipts/r2")
    add_payment(account_id, 5_000_000, status="pending", days_ago=0)
    add_payment(account_id, 7_000_000, status="failed", days_ago=0, failure="The payment expired unpaid.")
    expires = db.session.get(Account, account_id).credits_expire_at
    page = client.get("/billing/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="balance"><span class="money" title="$80.00">$80.00</span><' in html
    assert f'data-testid="expiry">{expires:%Y-%m-%d}<' in html
    # The payment 400 days ago is outside the 12 months; refunds and disputes are told apart.
    assert 'data-testid="paid-year"><span class="money" title="$60.00">$60.00</span><' in html
    assert "$45.00 after refunds and disputes" in html
    for preset in (5, 10, 20, 50, 100):
        assert f'name="preset" value="{preset * 1_000_000}">${preset}.00</button>' in html
    assert "In US dollars, from $5 to $500." in html
    for link in ("https://pay.stripe.com/receipts/r1", "https://invoice.stripe.com/i/in_1",
                 "https://pay.stripe.com/receipts/r2", "https://pay.stripe.com/receipts/old"):
        assert f'href="{link}"' in html
    assert "$10.00 refunded" in html and "$5.00 disputed (needs a response)" in html
    assert "not paid (yet)" in html and "failed: The payment expired unpaid." in html
    assert "Alipay" in html and "WeChat Pay" in html
    # Newest first.
    order = [html.index(s) for s in ("$7.00", "$5.00</td>", "receipts/r2", "receipts/r1", "receipts/old")]
    assert order == sorted(order)


def test_other_peoples_payments_are_not_shown(client, auth):
    auth.user()
    stranger = make_user("stranger@example.com")
    add_payment(stranger.account.id, 30_000_000, receipt_url="https://pay.stripe.com/receipts/theirs")
    html = client.get("/billing/").get_data(as_text=True)
    assert "receipts/theirs" not in html and 'data-testid="paid-year"><span class="money" title="$0.00">$0.00<' in html
    assert "No top-ups yet." in html


@pytest.mark.parametrize("settings", [{"STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": ""}])
def test_without_stripe_keys_the_page_says_so_and_the_portal_works(client, auth, fake_stripe):
    auth.user(credit=3_000_000)
    page = client.get("/billing/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Card top-ups are not configured on this site." in html
    assert "redeem a gift code" in html and 'href="/contact"' in html and 'name="preset"' not in html
    refused = client.post("/billing/checkout", data={"preset": "5000000"})
    assert refused.status_code == 422 and "Card top-ups are not configured on this site." in refused.get_data(as_text=True)
    assert payments() == [] and fake_stripe.requests == []
    for path in ("/dashboard/", "/keys/", "/usage/", "/account/", "/billing/success?session_id=cs_x", "/billing/cancel"):
        assert client.get(path).status_code == 200, path


# -- starting Checkout ----------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [{"STRIPE_PAYMENT_METHODS": ("card",)},
                                      {"STRIPE_PAYMENT_METHODS": ("card", "alipay", "wechat_pay")}])
def test_a_preset_opens_a_checkout_session_for_that_amount(client, auth, fake_stripe, settings):
    user = auth.user()
    response = client.post("/billing/checkout", data={"preset": "20000000"})
    [sent] = checkout_requests(fake_stripe)
    [payment] = payments()
    assert response.status_code == 303 and response.headers["Location"] == f"{fake_stripe.url}/pay/{payment.checkout_session_id}"
    assert sent["mode"] == "payment"
    assert sent["line_items"] == [{"quantity": "1", "price_data": {"currency": "usd", "unit_amount": "2000",
                                                                   "product_data": {"name": "Tollgate credit, $20.00"}}}]
    metadata = {"account_id": str(user.account.id), "user_id": str(user.id), "amount_cents": "2000"}
    assert sent["metadata"] == metadata and sent["payment_intent_data"]["metadata"] == metadata
    assert sent["invoice_creation"]["enabled"] == "true"
    assert sent["customer_email"] == "person@example.com"
    # Links back are built from PUBLIC_URL, never from the Host the browser sent (localhost here).
    assert sent["success_url"] == f"{PUBLIC}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"
    assert sent["cancel_url"] == f"{PUBLIC}/billing/cancel"
    methods = settings["STRIPE_PAYMENT_METHODS"]
    assert sent["payment_method_types"] == list(methods)
    if "wechat_pay" in methods:
        assert sent["payment_method_options"] == {"wechat_pay": {"client": "web"}}
    else:
        assert "payment_method_options" not in sent
    assert (payment.account_id, payment.source, payment.status, payment.amount) == (user.account.id, "stripe",
                                                                                   "pending", 20_000_000)


@pytest.mark.parametrize("typed, cents", [("12.50", "1250"), ("$7", "700"), (" 500 ", "50000"), ("5", "500"),
                                          ("1,000.00", None)])
def test_a_custom_amount_in_dollars(client, auth, fake_stripe, typed, cents):
    auth.user()
    response = client.post("/billing/checkout", data={"amount": typed})
    if cents is None:  # $1,000 is above the $500 maximum
        assert response.status_code == 422 and checkout_requests(fake_stripe) == []
        return
    assert response.status_code == 303
    [sent] = checkout_requests(fake_stripe)
    assert sent["line_items"][0]["price_data"]["unit_amount"] == cents and sent["metadata"]["amount_cents"] == cents


def test_each_attempt_is_a_new_session_with_its_own_idempotency_key(client, auth, fake_stripe):
    auth.user()
    client.post("/billing/checkout", data={"preset": "5000000"})
    client.post("/billing/checkout", data={"preset": "5000000"})
    keys = [r["headers"].get("Idempotency-Key") for r in fake_stripe.requests if r["path"] == "/v1/checkout/sessions"]
    assert len(keys) == 2 and all(keys) and keys[0] != keys[1]
    assert len({p.checkout_session_id for p in payments()}) == 2


@pytest.mark.parametrize("data, message", [
    ({"amount": "4.99"}, AMOUNT_HELP),
    ({"amount": "500.01"}, AMOUNT_HELP),
    ({"amount": "5.001"}, "Enter whole cents, like 12.50: $5.001 cannot be paid by card."),
    ({"amount": "0"}, AMOUNT_HELP),
    ({"amount": "abc"}, AMOUNT_HELP),
    ({"amount": "-5"}, AMOUNT_HELP),
    ({"amount": "1e3"}, AMOUNT_HELP),
    ({"amount": "NaN"}, AMOUNT_HELP),
    ({"amount": "9" * 400}, AMOUNT_HELP),
    ({"amount": "99999999999999999999"}, AMOUNT_HELP),
    ({"amount": "\u0661\u0660"}, AMOUNT_HELP),  # Arabic-Indic "10"
    ({"amount": "\uff11\uff10"}, AMOUNT_HELP),  # full-width "10"
    ({"amount": ""}, "Choose an amount, or enter one in US dollars between $5 and $500, like 20 or 12.50."),
    ({}, "Choose an amount, or enter one in US dollars between $5 and $500, like 20 or 12.50."),
    ({"preset": "7000000"}, "Choose one of the amounts shown"),
    ({"preset": "-5000000"}, "Choose one of the amounts shown"),
    ({"preset": "5e6"}, "Choose one of the amounts shown"),
    ({"preset": "\u0665000000"}, "Choose one of the amounts shown"),
])
@pytest.mark.one_backend  # input checks no database can change
def test_bad_amounts_are_refused_on_the_form_before_stripe(client, auth, fake_stripe, data, message):
    auth.user()
    response = client.post("/billing/checkout", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and message in html and 'role="alert"' in html
    assert "<h1>Billing</h1>" in html  # the whole page again, with the error by the field
    assert checkout_requests(fake_stripe) == [] and payments() == []


def test_amount_limits_come_from_the_configuration(client, auth, fake_stripe, app):
    auth.user()
    app.config.update(TOPUP_MIN=1_000_000, TOPUP_MAX=2_000_000, TOPUP_PRESETS=(1_000_000,))
    assert client.post("/billing/checkout", data={"amount": "2.01"}).status_code == 422
    assert b"In US dollars, from $1 to $2." in client.get("/billing/").data
    assert client.post("/billing/checkout", data={"amount": "1.50"}).status_code == 303
    assert [p.amount for p in payments()] == [1_500_000]


def test_a_stripe_failure_is_readable_and_records_nothing(client, auth, fake_stripe):
    auth.user()
    fake_stripe.fail_checkout = True
    response = client.post("/billing/checkout", data={"preset": "5000000"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "The payment could not be started" in html and "Nothing was charged" in html
    assert SECRET_KEY not in html and "sk_test" not in html
    assert len(checkout_requests(fake_stripe)) >= 1 and payments() == []


def test_htmx_is_sent_to_stripe_with_hx_redirect(client, auth, fake_stripe):
    auth.user()
    response = client.post("/billing/checkout", data={"preset": "10000000"}, headers=HX)
    [payment] = payments()
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == f"{fake_stripe.url}/pay/{payment.checkout_session_id}"
    refused = client.post("/billing/checkout", data={"amount": "3"}, headers=HX)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "<html" not in html and AMOUNT_HELP in html


def test_the_page_lets_its_forms_go_on_to_stripe_checkout(client, auth, fake_stripe):
    # The form's 303 goes to Stripe: browsers hold it to the form page's CSP form-action.
    auth.user()
    csp = client.get("/billing/").headers["Content-Security-Policy"]
    assert f"form-action 'self' {fake_stripe.url};" in csp and "script-src 'self';" in csp
    assert "form-action 'self';" in client.get("/keys/").headers["Content-Security-Policy"]


def test_csrf_is_enforced_when_enabled(app, client, auth, fake_stripe):
    auth.user()
    app.config["WTF_CSRF_ENABLED"] = True
    page = client.get("/billing/").get_data(as_text=True)
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    assert client.post("/billing/checkout", data={"preset": "5000000"}).status_code == 400
    assert client.post("/billing/alerts", data={"threshold": "3"}).status_code == 400
    assert checkout_requests(fake_stripe) == []
    accepted = client.post("/billing/checkout", data={"preset": "5000000", "csrf_token": token})
    assert accepted.status_code == 303 and len(checkout_requests(fake_stripe)) == 1


def test_unverified_users_are_refused(client, auth, fake_stripe):
    auth.user(verified=False)
    response = client.post("/billing/checkout", data={"preset": "5000000"})
    assert response.status_code == 422 and b"Confirm your email address before topping up" in response.data
    assert checkout_requests(fake_stripe) == [] and payments() == []


@pytest.mark.parametrize("status", ["suspended", "terminated"])
def test_suspended_and_closed_accounts_are_refused(client, auth, fake_stripe, status):
    user = auth.user()
    with atomic():
        users.set_status(db.session.get(User, user.id), UserStatus(status), "test")
    # The portal has logged them out (terminated), or keeps them read-only (suspended, issue 10)...
    assert client.post("/billing/checkout", data={"preset": "5000000"}).status_code == \
        (403 if status == "suspended" else 302)
    # ...and the domain refuses them whoever asks.
    with pytest.raises(topups.TopupRefused, match="suspended or closed"):
        topups.start_checkout(db.session.get(User, user.id), 5_000_000, success_url="x", cancel_url="y")
    assert checkout_requests(fake_stripe) == [] and payments() == []


def test_the_domain_refuses_amounts_whatever_the_view_sends(app, fake_stripe):
    user = make_user()
    for amount in (4_990_000, 500_010_000, 5_000_001, -5_000_000, 0, True, "5000000", 5.0):
        with pytest.raises(topups.InvalidAmount) as caught:
            topups.start_checkout(user, amount, success_url="x", cancel_url="y")
        assert caught.value.field == "amount"
    app.extensions["stripe_gateway"] = None
    with pytest.raises(topups.TopupsUnavailable):
        topups.start_checkout(user, 5_000_000, success_url="x", cancel_url="y")
    assert checkout_requests(fake_stripe) == []


# -- coming back from Stripe ----------------------------------------------------------------------

def test_success_page_for_a_paid_and_a_pending_payment(client, auth):
    user = auth.user(credit=2_000_000)
    add_payment(user.account.id, 10_000_000, checkout_session_id="cs_test_paid")
    add_payment(user.account.id, 5_000_000, status="pending", checkout_session_id="cs_test_pending")
    paid = client.get("/billing/success?session_id=cs_test_paid").get_data(as_text=True)
    assert "Your payment of $10.00 is confirmed." in paid
    assert 'data-testid="balance"><span class="money" title="$12.00">$12.00</span><' in paid
    assert 'hx-trigger="every' not in paid
    pending = client.get("/billing/success?session_id=cs_test_pending")
    html = pending.get_data(as_text=True)
    assert pending.status_code == 200 and "Stripe is confirming your payment of $5.00." in html
    assert 'hx-trigger="every 3s"' in html and "$12.00" not in html
    fragment = client.get("/billing/success?session_id=cs_test_pending", headers=HX).get_data(as_text=True)
    assert "<html" not in fragment and "Stripe is confirming" in fragment
    # Coming back credits nothing: only the webhook does.
    db.session.rollback()
    assert db.session.get(Account, user.account.id).balance == 12_000_000


def test_success_page_shows_nothing_of_someone_elses_payment(client, auth):
    auth.user(credit=1_000_000)
    stranger = make_user("stranger@example.com", credit=70_000_000)
    add_payment(stranger.account.id, 40_000_000, checkout_session_id="cs_test_theirs")
    for query in ("?session_id=cs_test_theirs", "?session_id=", "", "?session_id=cs_test_nothing"):
        response = client.get("/billing/success" + query)
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and "We have no payment of yours by that reference." in html
        assert "$40.00" not in html and "$110.00" not in html and "$70.00" not in html


def test_cancel_page(client, auth):
    auth.user()
    html = client.get("/billing/cancel").get_data(as_text=True)
    assert "nothing was charged" in html and 'href="/billing/"' in html


def test_billing_pages_need_a_login(client):
    for path in ("/billing/", "/billing/success?session_id=cs_x", "/billing/cancel"):
        assert client.get(path).status_code == 302
    assert client.post("/billing/checkout", data={"preset": "5000000"}).status_code == 302


# -- low-balance mail -----------------------------------------------------------------------------

def test_low_balance_threshold_form(client, auth):
    user = auth.user(credit=10_000_000)
    assert 'name="threshold" type="text" value="1.00"' in client.get("/billing/").get_data(as_text=True)
    saved = client.post("/billing/alerts", data={"threshold": "2.50"})
    assert saved.status_code == 303
    db.session.rollback()
    assert db.session.get(Account, user.account.id).low_balance_threshold == 2_500_000
    assert b"falls below $2.50" in client.get("/billing/").data  # the flash
    assert client.post("/billing/alerts", data={"threshold": "0"}, headers=HX).headers["HX-Redirect"] == "/billing/"
    assert b"Low-balance mail is off." in client.get("/billing/").data
    for bad in ("abc", "-1", "", "2000000"):
        refused = client.post("/billing/alerts", data={"threshold": bad})
        assert refused.status_code == 422 and b'id="threshold-error"' in refused.data, bad
    db.session.rollback()
    assert db.session.get(Account, user.account.id).low_balance_threshold == 0


# -- the dashboard --------------------------------------------------------------------------------

def test_dashboard_points_to_billing_when_the_balance_is_low(client, auth):
    user = auth.user(credit=500_000)  # below the default $1 alert threshold
    html = client.get("/dashboard/").get_data(as_text=True)
    assert 'data-testid="topup-hint"' in html and 'href="/billing/">Top up</a>' in html
    assert 'data-testid="expiry">no date yet<' in html
    add_payment(user.account.id, 20_000_000, days_ago=3)
    expires = db.session.get(Account, user.account.id).credits_expire_at
    html = client.get("/dashboard/").get_data(as_text=True)
    assert 'data-testid="topup-hint"' not in html and f'data-testid="expiry">{expires:%Y-%m-%d}<' in html


def test_dashboard_says_when_credits_expired(client, auth):
    user = auth.user()
    add_payment(user.account.id, 20_000_000, days_ago=400)
    expires = db.session.get(Account, user.account.id).credits_expire_at
    html = client.get("/dashboard/").get_data(as_text=True)
    assert f"Your credits expired on {expires:%Y-%m-%d}" in html and 'href="/billing/">Top up</a>' in html
    assert f"Your credits expired on {expires:%Y-%m-%d}" in client.get("/billing/").get_data(as_text=True)

