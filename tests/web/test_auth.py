"""Registration, verification, login throttling, password reset, 2FA at login, sessions."""
import re
import time

import pyotp
import pytest
from sqlalchemy import select

from portal import twofactor, users
from portal.database import atomic
from portal.extensions import db
from portal.models import TermsAcceptance, User
from portal.views.auth import REGISTER_LIMIT_IP
from tests.factories import PASSWORD, make_user
from tests.web.helpers import (LINK, in_parallel, last_link, meet_at_the_counters, outbox, path_of, publish_terms,
                               register)


def same_page(a: bytes, b: bytes) -> bool:
    """Equal but for CSRF tokens (signed with a timestamp, so they differ from second to second)."""
    token = re.compile(rb'("X-CSRFToken": "|name="csrf_token" type="hidden" value="|value=")[^"]+')
    return token.sub(rb"\1T", a) == token.sub(rb"\1T", b)


def test_register_verify_and_log_in(app, client, auth):
    publish_terms()
    page = client.get("/register")
    assert page.status_code == 200 and b"version v1" in page.data
    response = register(client, "Ada.Lovelace@Example.com")
    assert response.status_code == 200 and b"Check your inbox" in response.data
    user = db.session.scalar(select(User))
    assert (user.email, user.is_verified) == ("Ada.Lovelace@Example.com", False)
    consent = db.session.scalar(select(TermsAcceptance))
    assert consent.user_id == user.id and consent.document.version == "v1"
    link = last_link(app, "Ada.Lovelace@Example.com")
    assert "/verify/" in link
    assert client.get(path_of(link)).status_code == 302
    db.session.rollback()
    verified = db.session.get(User, user.id)
    assert verified.is_verified and verified.account.balance == 1_000_000  # welcome credit, once
    again = client.get(path_of(link))  # single use
    assert again.status_code == 400 and b"invalid, already used or expired" in again.data
    assert auth.login("ada.lovelace@example.com", "a long passphrase").headers["Location"] == "/dashboard/"


def test_registration_does_not_reveal_existing_accounts(app, client):
    publish_terms()
    make_user("taken@gmail.com")
    fresh = register(client, "someone@example.com")
    taken = register(client, "T.A.K.E.N+promo@googlemail.com")
    assert fresh.status_code == taken.status_code == 200
    assert same_page(fresh.data.replace(b"someone@example.com", b"X"),
                     taken.data.replace(b"T.A.K.E.N+promo@googlemail.com", b"X"))
    assert db.session.scalar(select(db.func.count()).select_from(User)) == 2
    [warning] = [m for m in outbox(app) if m["To"] == "taken@gmail.com"]
    assert warning["Subject"] == "Someone tried to register with your address"


@pytest.mark.parametrize("data, message", [
    ({"email": "not-an-email", "password": "a long passphrase", "accept_terms": "y"},
     b"Enter an email address like name@example.com."),
    ({"email": "a@example.com", "password": "short", "accept_terms": "y"}, b"Use at least 10 characters."),
    ({"email": "a@example.com", "password": "a long passphrase"}, b"you need to accept them to create an account"),
])
def test_registration_form_errors(app, client, data, message):
    publish_terms()
    response = client.post("/register", data=data)
    assert response.status_code == 422 and message in response.data
    assert db.session.scalar(select(User)) is None


def test_registration_waits_for_published_terms(client):
    response = client.get("/register")
    assert b"Registration opens once the operator has published the terms" in response.data


def test_expired_verification_link(app, client):
    from datetime import timedelta
    from portal.models import EmailToken
    publish_terms()
    register(client)
    with atomic():
        for token in db.session.scalars(select(EmailToken)):
            token.expires_at = token.expires_at - timedelta(days=3)
    response = client.get(path_of(last_link(app, "new@example.com")))
    assert response.status_code == 400


def test_login_throttled_per_account_and_address(client, auth):
    make_user()
    for _ in range(5):
        assert auth.login(password="wrong password!").status_code == 422
    blocked = auth.login()  # even the right password waits now
    assert blocked.status_code == 429 and b"Too many failed attempts. Try again in 15 minutes." in blocked.data


def test_login_throttled_per_ip(client, auth):
    for i in range(20):
        auth.login(f"nobody{i}@example.com", "wrong password!")
    make_user()
    assert auth.login().status_code == 429


def test_login_session_is_fresh(client, auth):
    make_user()
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    auth.login()
    with client.session_transaction() as session:
        assert "planted" not in session and "_user_id" in session


def test_password_reset(app, client, auth):
    make_user()
    other = client.application.test_client()
    auth.login(client=other)
    response = client.post("/forgot", data={"email": "PERSON@example.com"}, follow_redirects=True)
    assert b"If an account uses that address" in response.data
    unknown = client.post("/forgot", data={"email": "nobody@example.com"}, follow_redirects=True)
    assert same_page(unknown.data, response.data)
    path = path_of(last_link(app, "person@example.com"))
    assert client.post(path, data={"password": "short"}).status_code == 422
    assert client.post(path, data={"password": "a brand new passphrase"}).status_code == 302
    assert auth.login(password="a brand new passphrase").status_code == 302
    assert other.get("/dashboard/").status_code == 302  # the other session ended
    assert client.post(path, data={"password": "another new passphrase"}).status_code == 400


def test_two_factor_login(app, client, auth):
    user = make_user()
    with atomic():
        secret = twofactor.new_secret()
        codes = twofactor.enable(db.session.get(User, user.id), secret, pyotp.TOTP(secret).now())
    response = auth.login()
    assert response.headers["Location"] == "/login/2fa"
    assert client.get("/dashboard/").status_code == 302  # not logged in yet
    assert client.post("/login/2fa", data={"code": "000000"}).status_code == 422
    assert client.post("/login/2fa", data={"code": codes[0]}).headers["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200
    auth.logout()
    auth.login()
    assert client.post("/login/2fa", data={"code": codes[0]}).status_code == 422  # recovery codes work once
    # The code that turned 2FA on is used up (a code works once); the next step's code is in the window.
    next_code = pyotp.TOTP(secret).at(time.time() + 30)
    assert client.post("/login/2fa", data={"code": next_code}).status_code == 302


def test_unverified_user_sees_banner_and_can_resend(app, client, auth):
    make_user(verified=False)
    auth.login()
    page = client.get("/dashboard/")
    assert b"Confirm your email address to create API keys" in page.data
    client.post("/verify/resend")
    assert "/verify/" in last_link(app, "person@example.com")


def test_logout_requires_post_and_csrf(app, client, auth):
    make_user()
    auth.login()
    # A GET (a typed address, a prefetch) logs no one out: it goes to the home page (post/redirect/get).
    assert client.get("/logout").status_code == 303
    app.config["WTF_CSRF_ENABLED"] = True
    assert client.post("/logout").status_code == 400
    assert client.get("/dashboard/").status_code == 200


def test_suspension_ends_an_open_session(client, auth):
    user = make_user()
    auth.login()
    with atomic():
        users.suspend(db.session.get(User, user.id), "card testing")
    assert client.get("/keys/").status_code == 302


def test_htmx_posts_carry_the_csrf_token_in_a_header(app, client, auth):
    make_user()
    auth.login()
    app.config["WTF_CSRF_ENABLED"] = True
    page = client.get("/keys/").get_data(as_text=True)
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    refused = client.post("/keys/", data={"name": "x"}, headers={"HX-Request": "true"})
    assert refused.status_code == 400
    accepted = client.post("/keys/", data={"name": "x"}, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert accepted.status_code == 200 and 'data-testid="new-key"' in accepted.get_data(as_text=True)


def test_registration_is_throttled_and_cannot_mail_bomb_an_owner(app, client):
    publish_terms()
    make_user("owner@example.com")
    for i in range(10):
        assert register(client, "owner@example.com").status_code == 200
    assert len([m for m in outbox(app) if m["To"] == "owner@example.com"]) == 3
    blocked = register(client, "fresh@example.com")
    assert blocked.status_code == 429 and b"Too many sign-ups from your network" in blocked.data


def test_parallel_sign_ups_from_one_address_stop_at_the_limit(app, client, monkeypatch):
    """The per-address count is taken before the account is made, so parallel sign-ups count too."""
    publish_terms()
    meet_at_the_counters(monkeypatch, app, REGISTER_LIMIT_IP + 2)
    responses = in_parallel(REGISTER_LIMIT_IP + 2, lambda i: register(app.test_client(), f"new{i}@example.com"))
    assert sorted(r.status_code for r in responses) == [200] * REGISTER_LIMIT_IP + [429] * 2
    db.session.rollback()
    assert db.session.scalar(select(db.func.count()).select_from(User)) == REGISTER_LIMIT_IP


@pytest.mark.parametrize("email", ["a@b", "no-at-sign", "x" * 300 + "@example.com"])
def test_login_with_a_malformed_address_is_a_plain_failure(client, email):
    response = client.post("/login", data={"email": email, "password": "whatever12"})
    assert response.status_code == 422 and b"Email or password is not correct." in response.data


def test_unknown_address_costs_a_password_check_too(app, password_checks):
    assert users.authenticate_password("nobody@example.com", "guess guess") is None
    assert users.authenticate_password("a@b", "guess guess") is None
    assert password_checks == [users._DUMMY_HASH, users._DUMMY_HASH]


def test_a_change_email_link_cannot_reset_the_password(app, client, auth):
    """The link mailed to a new address (which may be anyone's) works for that change only."""
    auth.user()
    client.post("/account/email", data={"em-email": "new@example.com", "em-password": PASSWORD})
    token = last_link(app, "new@example.com").rsplit("/", 1)[1]
    auth.logout()
    assert client.post(f"/reset/{token}", data={"password": "taken over passphrase"}).status_code == 400
    assert auth.login(password="taken over passphrase").status_code == 422
    assert auth.login().status_code == 302


def test_a_new_reset_link_voids_the_older_one(app, client, auth):
    make_user()
    client.post("/forgot", data={"email": "person@example.com"})
    older = path_of(last_link(app, "person@example.com"))
    client.post("/forgot", data={"email": "person@example.com"})
    # Both mails may bear the same second, so tell the new link from the old by what it is.
    [newer] = {path_of(link) for m in outbox(app) for link in LINK.findall(m.get_content())} - {older}
    assert client.post(older, data={"password": "a brand new passphrase"}).status_code == 400
    assert client.post(newer, data={"password": "a brand new passphrase"}).status_code == 302
    assert auth.login(password="a brand new passphrase").status_code == 302
