"""Sessions end when they should: logout on the server, email change, single-use TOTP codes,
and registration that does the same work whether or not the address is taken."""
import time

import pyotp
from flask_login.config import COOKIE_NAME
from flask_login.utils import encode_cookie
from sqlalchemy import select

from portal import notices, twofactor, users
from portal.database import atomic
from portal.extensions import db
from portal.models import User
from tests.factories import PASSWORD, make_user
from tests.web.helpers import in_parallel, last_link, outbox, path_of, publish_terms, register


def session_cookie(app, client) -> str:
    return client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value


def with_cookie(app, value: str):
    """A fresh browser holding a copy of someone's session cookie."""
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    return client


def test_logout_ends_the_session_on_the_server(app, client, auth):
    auth.user()
    copied = session_cookie(app, client)
    assert with_cookie(app, copied).get("/dashboard/").status_code == 200  # a copy works while logged in
    auth.logout()
    replayed = with_cookie(app, copied).get("/dashboard/")
    assert replayed.status_code == 302 and replayed.headers["Location"].startswith("/login")


def test_a_remember_me_cookie_does_not_bring_an_ended_session_back(app, client, auth):
    user = auth.user()
    copied = session_cookie(app, client)
    auth.logout()
    for cookie in (copied, None):  # with the old session cookie, and on its own
        replay = with_cookie(app, copied) if cookie else app.test_client()
        with app.test_request_context():
            replay.set_cookie(app.config.get("REMEMBER_COOKIE_NAME", COOKIE_NAME), encode_cookie(user.get_id()))
        assert replay.get("/dashboard/").status_code == 302


def test_logging_out_ends_only_that_session(app, client, auth):
    auth.user()
    other = app.test_client()
    auth.login(client=other)
    auth.logout()
    assert other.get("/dashboard/").status_code == 200


def test_confirming_an_email_change_ends_other_sessions_and_tells_the_old_address(app, client, auth):
    auth.user()
    other = app.test_client()
    auth.login(client=other)
    client.post("/account/email", data={"em-email": "new@example.com", "em-password": PASSWORD})
    confirmed = client.get(path_of(last_link(app, "new@example.com")))
    assert confirmed.status_code == 302
    assert client.get("/account/").status_code == 200  # the session that confirmed goes on
    assert other.get("/account/").status_code == 302   # the other one ended
    notices.drain()  # the notice goes out on the background sender (security_notices.py)
    [notice] = [m for m in outbox(app) if m["To"] == "person@example.com"]
    assert notice["Subject"] == "Your email address was changed"
    assert "new@example.com" in notice.get_content()


def enable_two_factor(user) -> tuple[str, str]:
    """Turn 2FA on with the current code; returns the secret and a code of the next time step."""
    with atomic():
        secret = twofactor.new_secret()
        twofactor.enable(db.session.get(User, user.id), secret, pyotp.TOTP(secret).now())
    return secret, pyotp.TOTP(secret).at(time.time() + 30)


def test_a_totp_code_is_accepted_once(app):
    user = make_user()
    secret, code = enable_two_factor(user)
    with atomic():
        assert twofactor.check(db.session.get(User, user.id), code)
    with atomic():
        assert not twofactor.check(db.session.get(User, user.id), code)


def test_a_totp_code_older_than_the_last_one_used_is_refused(app):
    user = make_user()
    secret, _ = enable_two_factor(user)
    enabling_code = pyotp.TOTP(secret).now()  # its step (or an earlier one) was used to turn 2FA on
    with atomic():
        assert not twofactor.check(db.session.get(User, user.id), enabling_code)


def test_one_code_used_twice_in_parallel_logs_in_once(app, auth):
    user = make_user()
    _, code = enable_two_factor(user)
    browsers = [app.test_client() for _ in range(2)]
    for browser in browsers:
        assert auth.login(client=browser).headers["Location"] == "/login/2fa"
    responses = in_parallel(2, lambda i: browsers[i].post("/login/2fa", data={"code": code}))
    assert sorted(r.status_code for r in responses) == [302, 422]


class CountingHasher:
    def __init__(self, real):
        self.real, self.hashed = real, 0

    def hash(self, password):
        self.hashed += 1
        return self.real.hash(password)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_registration_does_the_same_work_for_a_taken_address(app, client, monkeypatch):
    """Same expensive hashing and one mail either way, so timing does not tell taken addresses apart."""
    publish_terms()
    make_user("taken@example.com")
    hasher = CountingHasher(users._hasher)
    monkeypatch.setattr(users, "_hasher", hasher)
    work = []
    for address in ("fresh@example.com", "taken@example.com"):
        hashed, mailed = hasher.hashed, len(outbox(app))
        assert register(client, address).status_code == 200
        work.append((hasher.hashed - hashed, len(outbox(app)) - mailed))
    assert work == [(1, 1), (1, 1)]
    assert db.session.scalar(select(db.func.count()).select_from(User)) == 2
