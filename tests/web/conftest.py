"""Fixtures for portal tests: `auth` logs a test client in and out through the real forms;
`csrf_on` turns CSRF protection on; `password_checks` records the password hashes verified."""
import pytest

from portal import users
from tests.factories import PASSWORD, make_admin, make_user, totp_code


class Auth:
    """Log in and out the way a browser does: the login form, its throttles and its session."""

    def __init__(self, client):
        self.client = client

    def login(self, email="person@example.com", password=PASSWORD, next=None, client=None, base_url=None,
              query=None):
        """POST the login form (as `client`, by default the test's own); returns the response.

        `query` is a raw query string sent exactly as written (any encoding of `next`); `next` is
        encoded for you. The test client keeps cookies per host: log in at the `base_url` the test
        goes on with.
        """
        if query is None and next is not None:
            query = {"next": next}
        return (client or self.client).post("/login", query_string=query, base_url=base_url,
                                            data={"email": email, "password": password})

    def logout(self, client=None):
        return (client or self.client).post("/logout")

    def user(self, email="person@example.com", **kwargs):
        """Make a user (tests.factories.make_user takes the same arguments) and log in as them."""
        user = make_user(email, **kwargs)
        response = self.login(email, kwargs.get("password", PASSWORD))
        assert response.status_code == 302, f"could not log in as {email}"
        return user

    def admin(self, email="admin@example.com", client=None, **kwargs):
        """Make an admin with two-factor on and log in through both steps; returns the user."""
        user = make_admin(email, **kwargs)
        self.admin_login(user, client=client)
        return user

    def admin_login(self, user, client=None):
        client = client or self.client
        response = self.login(user.email, client=client)
        assert response.status_code == 302 and "/login/2fa" in response.headers["Location"], response.status_code
        response = client.post("/login/2fa", data={"code": totp_code(user.id)})
        assert response.status_code == 302, f"could not complete two-factor login as {user.email}"
        return response


@pytest.fixture
def auth(client):
    return Auth(client)


@pytest.fixture
def csrf_on(app):
    """Turns CSRF protection on, as in production (the app is the test's own). Call it once logged in:
    the login form needs a token too once it is on."""
    return lambda: app.config.update(WTF_CSRF_ENABLED=True)


@pytest.fixture
def password_checks(monkeypatch):
    """The password hashes verified, one entry per check (argon2 is the expensive, guessable part)."""
    checked = []

    class Recording:
        def __init__(self, real):
            self.real = real

        def verify(self, hashed, password):
            checked.append(hashed)
            return self.real.verify(hashed, password)

        def __getattr__(self, name):
            return getattr(self.real, name)

    monkeypatch.setattr(users, "_hasher", Recording(users._hasher))
    return checked
