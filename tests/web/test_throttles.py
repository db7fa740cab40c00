"""Login and two-factor throttles: attempts are counted before they are checked, per account and address.

The rule (docs/architecture.md, "Throttles"): per account and client address 5 failures in 15
minutes, per address 20, per account from all addresses 50 an hour; two-factor codes 5 per
account and address in 15 minutes, 20 per account an hour. The parallel tests count the
secrets actually checked, never how long anything took. With REDIS_URL set, the counters
live in Redis.
"""
import time

import pyotp
import pytest

from portal import twofactor
from portal.database import atomic
from portal.extensions import db
from portal.models import User
from tests.factories import make_user
from tests.web.helpers import in_parallel

STRANGER, OWNER = "203.0.113.9", "198.51.100.7"


def at(client, address):
    """`client` as seen from `address` from now on."""
    client.environ_base["REMOTE_ADDR"] = address
    return client


@pytest.fixture
def code_checks(monkeypatch):
    checked = []
    real = twofactor.check

    def recording(user, code):
        checked.append(code)
        return real(user, code)

    monkeypatch.setattr(twofactor, "check", recording)
    return checked


def test_parallel_wrong_passwords_are_checked_at_most_the_limit(app, auth, password_checks):
    make_user()
    responses = in_parallel(40, lambda i: auth.login(password=f"wrong guess {i}", client=app.test_client()))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [422] * 5 + [429] * 35
    assert len(password_checks) == 5


def test_a_stranger_cannot_lock_the_owner_out(app, auth):
    make_user()
    stranger = at(app.test_client(), STRANGER)
    for i in range(60):  # more than the account's ceiling: refusals must not fill it
        auth.login(password=f"wrong guess {i}", client=stranger)
    assert auth.login(client=stranger).status_code == 429  # the right password waits there
    assert auth.login(client=at(app.test_client(), OWNER)).status_code == 302


def test_the_account_has_a_ceiling_over_all_addresses(app, auth):
    make_user()
    for address in range(10):
        client = at(app.test_client(), f"192.0.2.{address}")
        for _ in range(5):
            assert auth.login(password="wrong guess", client=client).status_code == 422
    elsewhere = at(app.test_client(), "192.0.2.200")
    refused = auth.login(client=elsewhere)
    assert refused.status_code == 429 and b"Too many failed attempts. Try again in 60 minutes." in refused.data


def test_a_successful_login_counts_against_no_one(app, auth):
    make_user()
    client = at(app.test_client(), OWNER)
    for _ in range(4):
        auth.login(password="wrong guess", client=client)
    for _ in range(25):  # more than the address limit of 20
        assert auth.login(client=client).status_code == 302
        auth.logout(client=client)
    for _ in range(4):  # the owner's address starts afresh after the right password
        assert auth.login(password="wrong guess", client=client).status_code == 422


def enable_two_factor(user) -> str:
    with atomic():
        secret = twofactor.new_secret()
        twofactor.enable(db.session.get(User, user.id), secret, pyotp.TOTP(secret).now())
    return secret


def waiting_for_code(app, auth, address=OWNER):
    """A client past the password, at the two-factor step."""
    client = at(app.test_client(), address)
    assert auth.login(client=client).headers["Location"] == "/login/2fa"
    return client


def test_parallel_wrong_codes_are_checked_at_most_the_limit(app, auth, code_checks):
    enable_two_factor(make_user())
    cookie = waiting_for_code(app, auth).get_cookie(app.config["SESSION_COOKIE_NAME"]).value

    def guess(i):
        client = at(app.test_client(), OWNER)
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
        return client.post("/login/2fa", data={"code": f"{i:06d}"})

    statuses = sorted(r.status_code for r in in_parallel(40, guess))
    assert statuses == [422] * 5 + [429] * 35
    assert len(code_checks) == 5


def test_wrong_codes_are_throttled_then_the_right_one_waits(app, auth):
    secret = enable_two_factor(make_user())
    client = waiting_for_code(app, auth)
    for _ in range(5):
        assert client.post("/login/2fa", data={"code": "000000"}).status_code == 422
    right = pyotp.TOTP(secret).at(time.time() + 30)
    refused = client.post("/login/2fa", data={"code": right})
    assert refused.status_code == 429 and b"Too many wrong codes" in refused.data


def test_two_factor_has_a_ceiling_per_account(app, auth):
    secret = enable_two_factor(make_user())
    for address in range(4):
        client = waiting_for_code(app, auth, f"192.0.2.{address}")
        for _ in range(5):
            assert client.post("/login/2fa", data={"code": "000000"}).status_code == 422
    client = waiting_for_code(app, auth, "192.0.2.200")
    right = pyotp.TOTP(secret).at(time.time() + 30)
    assert client.post("/login/2fa", data={"code": right}).status_code == 429

