"""Fixtures for portal tests: `auth` logs a test client in and out through the real forms;
`password_checks` records the password hashes verified."""
import pytest

from portal import users
from tests.factories import PASSWORD, make_user


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


@pytest.fixture
def auth(client):
    return Auth(client)


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
