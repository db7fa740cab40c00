"""Redeeming a gift code through the billing page's form."""
import re

from flask import render_template
from sqlalchemy import select

from portal import giftcodes
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, GiftCode
from tests.factories import make_user

REDEEM = "/billing/codes/redeem"


def make_code(amount=5_000_000) -> str:
    with atomic():
        return giftcodes.create(amount)[0]


def balance(user) -> int:
    db.session.rollback()
    return db.session.get(Account, user.account.id).balance


def flashed(client) -> str:
    """The page after a redirect shows the flash (any portal page does; the statement is one)."""
    return client.get("/statement/").get_data(as_text=True)


def test_redeeming_adds_the_amount_and_says_so(client, auth):
    user = auth.user()
    code = make_code()
    response = client.post(REDEEM, data={"code": code.lower()})
    assert response.status_code == 303 and response.headers["Location"] == "/billing/"
    assert "Added $5.00 to your balance." in flashed(client)
    assert balance(user) == 5_000_000


def test_an_htmx_post_is_told_where_to_go(client, auth):
    user = auth.user()
    response = client.post(REDEEM, data={"code": make_code()}, headers={"HX-Request": "true"})
    assert (response.status_code, response.headers["HX-Redirect"]) == (204, "/billing/")
    assert balance(user) == 5_000_000


def refused(client, typed) -> str:
    """A refused code: the billing page again (422), the reason by the field, the code kept."""
    response = client.post(REDEEM, data={"code": typed})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="code-error"' in html and "<h1>Billing</h1>" in html
    assert f'value="{typed}"' in html
    return html


def test_a_bad_code_is_explained_and_credits_nothing(client, auth):
    user = auth.user()
    code = make_code()
    assert "This gift code was not recognised. Check it and try again." in refused(client, "TG-ZZZZ-ZZZZ-ZZZZ-ZZZZ")
    client.post(REDEEM, data={"code": code})
    client.get("/statement/")  # take the success message
    assert "You have already redeemed this gift code." in refused(client, code)
    assert "Enter the gift code you were given, like TG-XXXX-XXXX-XXXX-XXXX." in refused(client, "  ")
    assert "Enter the code as you were given it: it looks like TG-XXXX-XXXX-XXXX-XXXX." in refused(client, "hello")
    assert balance(user) == 5_000_000


def test_too_many_attempts_get_a_page_saying_when_to_retry(client, auth):
    user = auth.user()
    for i in range(giftcodes.ATTEMPTS_PER_USER):
        client.post(REDEEM, data={"code": "TG-ZZZZ-ZZZZ-ZZZZ-ZZZZ"})
    response = client.post(REDEEM, data={"code": make_code()})
    assert response.status_code == 429
    assert "Too many gift code attempts. Try again in 60 minutes." in response.get_data(as_text=True)
    # htmx does not swap a 429 into the page: it is sent to the billing page, which says the same.
    response = client.post(REDEEM, data={"code": make_code()}, headers={"HX-Request": "true"})
    assert (response.status_code, response.headers["HX-Redirect"]) == (204, "/billing/")
    assert "Too many gift code attempts. Try again in 60 minutes." in flashed(client)
    assert balance(user) == 0


def test_the_address_limit_holds_across_accounts(app, client, auth):
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    for n in range(giftcodes.ATTEMPTS_PER_IP // giftcodes.ATTEMPTS_PER_USER):
        auth.user(f"p{n}@example.com")
        for _ in range(giftcodes.ATTEMPTS_PER_USER):
            assert client.post(REDEEM, data={"code": "TG-ZZZZ-ZZZZ-ZZZZ-ZZZZ"}).status_code == 422
        auth.logout()
    auth.user("fresh@example.com")
    assert client.post(REDEEM, data={"code": make_code()}).status_code == 429


def test_an_unverified_user_is_told_to_confirm_first(client, auth):
    user = auth.user(verified=False)
    assert "Confirm your email address before redeeming a gift code." in refused(client, make_code())
    assert balance(user) == 0 and db.session.scalar(select(GiftCode.redeemed_at)) is None


def test_redeeming_needs_a_login(client):
    make_user()
    response = client.post(REDEEM, data={"code": make_code()})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert db.session.scalar(select(GiftCode.redeemed_at)) is None


def test_csrf_is_required(app, client, auth):
    user = auth.user()
    code = make_code()
    app.config["WTF_CSRF_ENABLED"] = True
    stale = client.post(REDEEM, data={"code": code})
    html = stale.get_data(as_text=True)
    # The form again, the code kept, a fresh token: nothing redeemed.
    assert stale.status_code == 400 and "This form was open too long and has expired." in html
    assert f'value="{code}"' in html and 'name="csrf_token" value="' in html
    assert balance(user) == 0
    token = re.search(r'"X-CSRFToken": "([^"]+)"', client.get("/statement/").get_data(as_text=True)).group(1)
    assert client.post(REDEEM, data={"code": code, "csrf_token": token}).status_code == 303
    assert balance(user) == 5_000_000


def test_the_form_partial_posts_the_code_with_a_csrf_token(app):
    from portal.views.billing import RedeemForm
    with app.test_request_context():
        html = render_template("codes/_redeem_form.html", code_form=RedeemForm(formdata=None))
    assert 'action="/billing/codes/redeem"' in html and 'method="post"' in html
    assert 'name="code"' in html and re.search(r'name="csrf_token" value="[^"]+"', html)
