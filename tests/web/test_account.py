"""Account settings: password, email change, two-factor setup, closing; and the contact form."""
import pyotp
from sqlalchemy import select

from portal import apikeys
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, ContactMessage, RefundRequest, User
from tests.factories import PASSWORD, make_user
from tests.web.helpers import last_link, path_of


def user_row() -> User:
    db.session.rollback()
    return db.session.scalar(select(User).order_by(User.id))


def test_change_password_ends_other_sessions(client, auth):
    make_user()
    other = client.application.test_client()
    auth.login(), auth.login(client=other)
    bad = client.post("/account/password", data={"pw-current": "wrong one!!", "pw-new": "a new passphrase"})
    assert bad.status_code == 422 and b"current password is not correct" in bad.data
    ok = client.post("/account/password", data={"pw-current": PASSWORD, "pw-new": "a new passphrase"})
    assert ok.status_code == 303
    assert client.get("/account/").status_code == 200   # this session goes on
    assert other.get("/account/").status_code == 302    # the other one ended
    auth.logout()
    assert auth.login(password="a new passphrase").status_code == 302


def test_change_email_needs_the_new_address_confirmed(app, client, auth):
    make_user()
    make_user("taken@example.com")
    auth.login()
    taken = client.post("/account/email", data={"em-email": "taken@example.com", "em-password": PASSWORD})
    assert taken.status_code == 422 and b"belongs to another account" in taken.data
    client.post("/account/email", data={"em-email": "new@example.com", "em-password": PASSWORD})
    assert user_row().email == "person@example.com"
    client.get(path_of(last_link(app, "new@example.com")))
    assert user_row().email == "new@example.com"


def test_two_factor_setup_and_disable(client, auth):
    auth.user()
    page = client.get("/account/2fa").get_data(as_text=True)
    assert "data:image/svg+xml" in page
    secret = page.split('data-testid="totp-secret">')[1].split("<")[0]
    assert client.post("/account/2fa", data={"code": "123456"}).status_code == 422
    done = client.post("/account/2fa", data={"code": pyotp.TOTP(secret).now()}, follow_redirects=True)
    codes = done.get_data(as_text=True).split('data-testid="recovery-codes">')[1].split("<")[0].split()
    assert len(codes) == 10 and user_row().totp_enabled_at is not None
    assert client.get("/account/").status_code == 200  # still logged in after the session reset
    assert b"10 recovery codes left" in client.get("/account/").data
    assert client.post("/account/2fa/disable", data={"off-code": codes[3]}).status_code == 303
    assert user_row().totp_enabled_at is None


def test_close_account_with_balance_needs_a_refund_request(client, auth):
    user = make_user(credit=1_000_000)
    with atomic():
        apikeys.issue(user, "k")
    auth.login()
    refused = client.post("/account/close", data={"close-password": PASSWORD})
    assert refused.status_code == 422 and b"tick" in refused.data
    closed = client.post("/account/close", data={"close-password": PASSWORD, "refund": "yes"})
    assert closed.status_code == 303
    row = user_row()
    assert (row.status, row.email, row.password_hash) == ("terminated", f"closed-{row.id}@invalid", None)
    assert db.session.scalar(select(RefundRequest.balance_at_request)) == 1_000_000
    assert db.session.scalar(select(ApiKey.revoked_at)) is not None
    assert auth.login().status_code == 422
    # The address is free again for a new account.
    make_user("person@example.com")


def test_close_account_with_zero_balance(client, auth):
    auth.user()
    assert client.post("/account/close", data={"close-password": PASSWORD}).status_code == 303
    assert db.session.scalar(select(RefundRequest)) is None


def test_contact_form_stores_and_throttles(client):
    for i in range(5):
        response = client.post("/contact", data={"email": "a@example.com", "subject": f"hi {i}", "message": "hello"})
        assert response.status_code == 302
    blocked = client.post("/contact", data={"email": "a@example.com", "subject": "again", "message": "hello"})
    assert blocked.status_code == 429
    assert db.session.scalar(select(db.func.count()).select_from(ContactMessage)) == 5
    assert client.post("/contact", data={"email": "a@example.com"}).status_code == 422


def test_operator_reads_messages_and_refunds(client, cli, auth):
    assert "no messages" in cli("inbox", "messages").output
    client.post("/contact", data={"email": "a@example.com", "subject": "Invoice", "message": "Please send one"})
    out = cli("inbox", "messages").output
    assert "a@example.com" in out and "Invoice" in out and "Please send one" in out
    user = auth.user(credit=750_000)
    client.post("/account/close", data={"close-password": PASSWORD, "refund": "yes"})
    refunds = cli("inbox", "refunds").output
    # The account's address is anonymised on closing; the request keeps the one to reach them at.
    assert "person@example.com $0.75 [requested] account closed" in refunds
    assert f"closed-{user.id}@invalid" not in refunds
