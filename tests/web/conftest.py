"""Fixtures for portal tests: `auth` logs a test client in and out through the real forms."""
import pytest

from tests.factories import PASSWORD, make_user


class Auth:
    """Log in and out the way a browser does: the login form, its throttles and its session."""

    def __init__(self, client):
        self.client = client

    def login(self, email="person@example.com", password=PASSWORD, next=None, client=None):
        """POST the login form (as `client`, by default the test's own); returns the response."""
        query = {"next": next} if next is not None else None
        return (client or self.client).post("/login", query_string=query,
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
