"""Security notices: a mail, exactly once, for a sign-in from a new network, a new API key, a
changed password, a changed email (to the old address and the new) and two-factor turned off;
none for the first sign-in after sign-up. Each says what, when (UTC), from where, and what to do."""
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from portal import notices, retention, security_notices, twofactor
from portal.database import atomic
from portal.extensions import db
from portal.models import KnownAddress, User, utcnow
from tests.factories import PASSWORD, make_user
from tests.web.helpers import last_link, outbox, path_of, publish_terms, register

OWNER = "person@example.com"
HOME, ABROAD, ABROAD_SAME_NETWORK = "127.0.0.1", "198.51.100.7", "198.51.100.99"


def notices_to(app, address=OWNER, subject=None) -> list:
    """The security notices mailed to `address` so far (waiting for the background sender)."""
    notices.drain()
    subjects = {"New sign-in to your account", "Your password was changed", "Your email address was changed",
                "Two-factor authentication was turned off", "您的账户有新的登录"}
    return [m for m in outbox(app) if m["To"] == address
            and (m["Subject"] in subjects or m["Subject"].startswith("A new API key was created"))
            and (subject is None or m["Subject"] == subject)]


def sign_in(client, auth, ip: str):
    auth.logout()
    response = auth.login(client=client) if ip == HOME else client.post(
        "/login", data={"email": OWNER, "password": PASSWORD}, environ_base={"REMOTE_ADDR": ip})
    assert response.status_code == 302, response.status_code
    return response


def test_no_notice_for_the_first_sign_in_then_one_for_each_new_network(app, client, auth):
    make_user()
    sign_in(client, auth, HOME)                 # the first sign-in: they have just signed up
    sign_in(client, auth, HOME)                 # a known network
    assert notices_to(app) == []
    sign_in(client, auth, ABROAD)
    [notice] = notices_to(app)
    assert notice["Subject"] == "New sign-in to your account"
    body = notice.get_content()
    assert f"From address: {ABROAD}" in body and " UTC" in body and "When: " in body
    assert "http://localhost/forgot" in body and "http://localhost/contact" in body
    sign_in(client, auth, ABROAD)               # known now
    sign_in(client, auth, ABROAD_SAME_NETWORK)  # a new address on the same /24: the same line
    sign_in(client, auth, HOME)
    assert len(notices_to(app)) == 1
    sign_in(client, auth, "2001:db8::1")
    assert ["From address: 2001:db8::1" in m.get_content() for m in notices_to(app)] == [False, True]


def test_signing_up_and_signing_in_mails_no_notice(app, client, auth):
    publish_terms()
    register(client, OWNER, PASSWORD)
    client.get(path_of(last_link(app, OWNER)))  # verify
    response = client.post("/login", data={"email": OWNER, "password": PASSWORD},
                           environ_base={"REMOTE_ADDR": ABROAD})  # not where they signed up from
    assert response.status_code == 302
    assert notices_to(app) == []


def test_the_notice_is_in_the_account_language(app, client, auth):
    user = make_user()
    with atomic():
        db.session.get(User, user.id).locale = "zh"
    sign_in(client, auth, HOME)
    sign_in(client, auth, ABROAD)
    [notice] = notices_to(app)
    assert notice["Subject"] == "您的账户有新的登录"
    body = notice.get_content()
    assert f"来源地址：{ABROAD}" in body and "（UTC）" in body and "年" in body
    assert "如果不是您本人，可能有人掌握了您的密码。请立即设置新密码：" in body


def test_a_new_key_is_told_with_its_name_and_never_its_secret(app, client, auth):
    auth.user()
    client.post("/keys/", data={"name": "laptop"})
    [notice] = notices_to(app)
    assert notice["Subject"] == "A new API key was created: laptop"
    body = notice.get_content()
    assert "“laptop”" in body and f"From address: {HOME}" in body and "tg_" not in body


def test_a_changed_password_is_told_once(app, client, auth):
    auth.user()
    client.post("/account/password", data={"pw-current": "wrong one!!", "pw-new": "a new passphrase"})
    assert notices_to(app) == []  # refused: nothing changed
    assert client.post("/account/password", data={"pw-current": PASSWORD, "pw-new": "a new passphrase"}
                       ).status_code == 303
    [notice] = notices_to(app)
    assert notice["Subject"] == "Your password was changed"
    assert "The password of your account was changed" in notice.get_content()
    assert "a new passphrase" not in notice.get_content()


def test_a_password_reset_by_link_is_told_too(app, client):
    make_user()
    client.post("/forgot", data={"email": OWNER})
    assert client.post(path_of(last_link(app, OWNER)), data={"password": "a brand new passphrase"},
                       environ_base={"REMOTE_ADDR": ABROAD}).status_code == 302
    [notice] = notices_to(app)
    assert notice["Subject"] == "Your password was changed" and f"From address: {ABROAD}" in notice.get_content()


def test_a_changed_email_is_told_to_the_old_address_and_the_new(app, client, auth):
    auth.user()
    client.post("/account/email", data={"em-email": "new@example.com", "em-password": PASSWORD})
    assert notices_to(app) == []  # asked, not changed yet
    client.get(path_of(last_link(app, "new@example.com")))
    [old] = notices_to(app, OWNER)
    [new] = notices_to(app, "new@example.com")
    for notice in (old, new):
        assert notice["Subject"] == "Your email address was changed"
        assert f"from {OWNER} to new@example.com" in notice.get_content()
        assert f"From address: {HOME}" in notice.get_content()
    assert "Write to us from this address (the one the account had)" in old.get_content()
    assert "Choose a new one at once" in new.get_content()


def test_two_factor_turned_off_is_told_once(app, client, auth):
    user = make_user()
    secret = twofactor.new_secret()
    with atomic():
        codes = twofactor.enable(db.session.get(User, user.id), secret, pyotp.TOTP(secret).now())
    assert auth.login().headers["Location"] == "/login/2fa"
    assert client.post("/login/2fa", data={"code": codes[1]}).status_code == 302
    assert client.post("/account/2fa/disable", data={"off-code": "000000"}).status_code == 422
    assert notices_to(app) == []
    assert client.post("/account/2fa/disable", data={"off-code": codes[0]}).status_code == 303
    [notice] = notices_to(app)
    assert notice["Subject"] == "Two-factor authentication was turned off"
    assert "signing in now takes only the password" in notice.get_content() and codes[0] not in notice.get_content()


def test_one_of_two_sign_ins_from_one_new_network_is_due(app):
    user = make_user()
    with atomic():
        assert security_notices.note_sign_in(user.id, HOME) is False  # the first: no notice
    with atomic():
        assert security_notices.note_sign_in(user.id, ABROAD) is True
    with atomic():
        assert security_notices.note_sign_in(user.id, ABROAD_SAME_NETWORK) is False
        assert security_notices.note_sign_in(user.id, "not an address") is False


@pytest.mark.parametrize("ip, network", [("198.51.100.7", "198.51.100.0/24"), ("::ffff:198.51.100.7", "198.51.100.0/24"),
                                         ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"), ("unknown", None)])
def test_networks(ip, network):
    assert security_notices.network_of(ip) == network


def test_the_privacy_job_forgets_the_networks_but_not_that_they_signed_in(app):
    user = make_user()
    with atomic():
        security_notices.note_sign_in(user.id, HOME, now=utcnow() - timedelta(days=100))
        security_notices.note_sign_in(user.id, ABROAD, now=utcnow() - timedelta(days=100))
    erased = retention.erase_old_addresses(utcnow(), 90)
    assert erased["known_address"] == 2
    assert sorted(str(n) for n in db.session.scalars(select(KnownAddress.network))) == ["None", "None"]
    with atomic():  # forgotten, so new again; and not taken for a first sign-in
        assert security_notices.note_sign_in(user.id, ABROAD) is True


def test_a_closed_account_gets_no_notice(app):
    user = make_user()
    with atomic():
        db.session.get(User, user.id).status = "terminated"
    event = security_notices.Event(security_notices.NEW_ADDRESS, user.id, ABROAD, utcnow())
    assert security_notices.send(event) == 0
    assert outbox(app) == []
