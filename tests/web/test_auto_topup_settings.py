"""The billing page's automatic top-up: saving a card with a top-up, the settings form, forgetting the card."""
import re

import pytest

from portal import autotopup, payments
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, Payment
from tests.conftest import stripe_settings
from tests.fake_stripe import parse_form

HX = {"HX-Request": "true"}
GOOD = {"auto_enabled": "y", "auto_threshold": "5", "auto_amount": "20", "auto_limit": "60"}


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


def account(user) -> Account:
    db.session.rollback()
    return db.session.get(Account, user.account.id)


def checkout_requests(fake) -> list[dict]:
    return [parse_form(r["body"]) for r in fake.requests
            if r["method"] == "POST" and r["path"] == "/v1/checkout/sessions"]


def saved_card(client, fake) -> None:
    """Top up $10 from the page with "save my card" ticked; Stripe's page pays, its webhook event credits."""
    answer = client.post("/billing/checkout", data={"amount": "10", "save_card": "y"})
    assert answer.status_code == 303
    [session_id] = fake.sessions
    fake.pay(session_id)
    payments.handle_event(fake.session_event("checkout.session.completed", session_id))


def test_the_top_up_form_can_save_the_card(client, auth, fake_stripe):
    user = auth.user()
    page = client.get("/billing/").get_data(as_text=True)
    assert 'name="save_card"' in page and 'data-testid="no-saved-card"' in page
    saved_card(client, fake_stripe)
    [sent] = checkout_requests(fake_stripe)
    assert sent["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert sent["payment_method_types"] == ["card"]
    assert account(user).auto_topup_card == "visa •••• 4242"
    page = client.get("/billing/").get_data(as_text=True)
    assert "Saved card: visa •••• 4242." in page and "Forget my card" in page


def test_a_plain_top_up_saves_nothing(client, auth, fake_stripe):
    auth.user()
    assert client.post("/billing/checkout", data={"amount": "10"}).status_code == 303
    assert client.post("/billing/checkout", data={"preset": "5000000"}).status_code == 303
    assert all("setup_future_usage" not in s["payment_intent_data"] for s in checkout_requests(fake_stripe))


def test_settings_are_saved_with_and_without_htmx(client, auth, fake_stripe):
    user = auth.user()
    saved = client.post("/billing/auto-topup", data=GOOD)
    assert saved.status_code == 303
    acct = account(user)
    assert (acct.auto_topup_enabled, acct.auto_topup_threshold, acct.auto_topup_amount,
            acct.auto_topup_monthly_limit) == (True, 5_000_000, 20_000_000, 60_000_000)
    page = client.get("/billing/").get_data(as_text=True)
    assert "Automatic top-up is on: $20.00 when your available balance falls below $5.00" in page
    assert "once you save a card" in page
    assert 'name="auto_limit" type="text" value="60.00"' in page

    off = client.post("/billing/auto-topup", data={**GOOD, "auto_enabled": ""}, headers=HX)
    assert off.status_code == 204 and off.headers["HX-Redirect"] == "/billing/"
    assert account(user).auto_topup_enabled is False
    assert "Automatic top-up is off." in client.get("/billing/").get_data(as_text=True)


@pytest.mark.parametrize("field, value, message", [
    ("auto_threshold", "abc", "Enter an amount in US dollars up to $1,000,000, like 5 or 2.50."),
    ("auto_threshold", "-1", "Enter an amount in US dollars up to $1,000,000, like 5 or 2.50."),
    ("auto_amount", "", "Enter an amount in US dollars between $5 and $500, like 20 or 12.50."),
    ("auto_amount", "1", "Enter an amount in US dollars between $5 and $500, like 20 or 12.50."),
    ("auto_amount", "600", "Enter an amount in US dollars between $5 and $500, like 20 or 12.50."),
    ("auto_amount", "20.005", "Enter whole cents, like 12.50: $20.005 cannot be paid by card."),
    ("auto_limit", "10", "Enter at least one top-up ($20.00), like 100: the monthly ceiling must allow one charge."),
    ("auto_limit", "9" * 40, "Enter an amount in US dollars up to $1,000,000, like 100 or 250."),
])
def test_bad_settings_are_refused_on_the_form(client, auth, fake_stripe, field, value, message):
    user = auth.user()
    for headers in ({}, HX):
        refused = client.post("/billing/auto-topup", data={**GOOD, field: value}, headers=headers)
        assert refused.status_code == 422
        html = refused.get_data(as_text=True)
        assert f'id="{field}-error"' in html and message in html
    assert account(user).auto_topup_enabled is False  # nothing saved


def test_csrf_is_enforced_when_enabled(app, client, auth, fake_stripe):
    user = auth.user()
    saved_card(client, fake_stripe)
    app.config["WTF_CSRF_ENABLED"] = True
    page = client.get("/billing/").get_data(as_text=True)
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    assert client.post("/billing/auto-topup", data=GOOD).status_code == 400
    assert client.post("/billing/auto-topup/forget-card").status_code == 400
    acct = account(user)
    assert acct.auto_topup_enabled is False and acct.auto_topup_payment_method is not None
    assert client.post("/billing/auto-topup", data={**GOOD, "csrf_token": token}).status_code == 303
    assert account(user).auto_topup_enabled is True


def test_forgetting_the_card_turns_it_off(client, auth, fake_stripe):
    user = auth.user()
    saved_card(client, fake_stripe)
    client.post("/billing/auto-topup", data=GOOD)
    answer = client.post("/billing/auto-topup/forget-card", headers=HX)
    assert answer.headers["HX-Redirect"] == "/billing/"
    acct = account(user)
    assert (acct.auto_topup_payment_method, acct.auto_topup_card, acct.auto_topup_enabled) == (None, None, False)
    page = client.get("/billing/").get_data(as_text=True)
    assert "Your card is forgotten and automatic top-up is off." in page and "Forget my card" not in page


def test_the_page_shows_what_was_charged_this_month(client, auth, fake_stripe):
    user = auth.user()
    saved_card(client, fake_stripe)
    client.post("/billing/auto-topup", data={**GOOD, "auto_threshold": "50"})  # $10 is below $50
    assert autotopup.attempt(user.account.id).startswith("charged")
    html = client.get("/billing/").get_data(as_text=True)
    assert 'data-testid="auto-month">Charged automatically this month: $20.00 of $60.00.' in html
    [payment] = db.session.query(Payment).filter_by(auto_topup=True).all()
    assert re.search(rf'data-testid="payment-{payment.id}">.*?\$20\.00<br><small>automatic</small>', html, re.S)


def test_the_domain_refuses_bad_settings_whatever_the_view_sends(app, fake_stripe):
    from portal.errors import InvalidAmount
    from tests.factories import make_user
    user = make_user()
    for kwargs, field in (({"threshold": -1}, "auto_threshold"), ({"threshold": True}, "auto_threshold"),
                          ({"amount": 5_000_001}, "auto_amount"), ({"monthly_limit": 19_999_999}, "auto_limit")):
        args = {"enabled": True, "threshold": 0, "amount": 20_000_000, "monthly_limit": 20_000_000, **kwargs}
        with pytest.raises(InvalidAmount) as refused, atomic():
            autotopup.configure(db.session.get(Account, user.account.id), **args)
        assert refused.value.field == field
