"""Redirect targets (`next`) stay on this site however they are encoded: login, two-factor, consent."""
import pyotp
import pytest

from portal import links, twofactor
from portal.database import atomic
from portal.extensions import db
from portal.models import User
from tests.factories import make_user
from tests.web.helpers import publish_terms, user_who_accepted_the_terms

DASHBOARD = "/dashboard/"

# `next` exactly as it appears in the query string (percent-encoded where a browser would).
HOSTILE = [
    "//evil.com", "///evil.com", "////evil.com", "/%2F/evil.com", "/%2F%2Fevil.com", "/%252F%252Fevil.com",
    "/%09/evil.com", "/%0A/evil.com", "/%0D/evil.com", "%09//evil.com", "/%0D%0ASet-Cookie:%20a=b",
    "%0D%0ALocation:%20https://evil.com", "/%7F/evil.com", "/%C2%85/evil.com",
    "/%5Cevil.com", "%5C%5Cevil.com", "/%5C/evil.com", "/%255Cevil.com", "%2F%5Cevil.com",
    "https://evil.com", "https:evil.com", "https:/evil.com", "HTTPS://evil.com", "http:%2F%2Fevil.com",
    "javascript:alert(1)", "data:text/html,x", "evil.com", "%20//evil.com", "%20/keys/", "/%20/evil.com",
    "/%E3%80%80/evil.com", "/%EF%BC%8Fevil.com", "%EF%BC%8F%EF%BC%8Fevil.com", "/%E2%80%AE/moc.live",
    "/%ED%A0%80", "/keys/%0D%0A", "/" + "a" * 3000,
]
# Two-factor and consent share safe_next with login; one of each kind of trick is enough there.
SAMPLE = ["//evil.com", "/%2F%2Fevil.com", "/%09/evil.com", "/%0D%0ASet-Cookie:%20a=b", "/%5Cevil.com",
          "/%255Cevil.com", "https:evil.com", "javascript:alert(1)", "%20//evil.com", "/%EF%BC%8Fevil.com"]
LOCAL = [("/keys/", "/keys/"), ("/usage/?page=2%26key=1", "/usage/?page=2&key=1"), ("/", "/"),
         ("/account/", "/account/")]


@pytest.mark.parametrize("target", [
    "//evil.com", "/\\evil.com", "\\\\evil.com", "/\t/evil.com", "/\r\n/evil.com", " /keys/", "/keys/ ",
    "/%2F%2Fevil.com", "/%5Cevil.com", "https:evil.com", "/\uff0fevil.com", "/\u202e/moc.live", "/\x00",
    "/caf\u00e9", "", None,
])
def test_is_local_path_refuses(target):
    assert not links.is_local_path(target)


@pytest.mark.parametrize("target", ["/", "/keys/", "/usage/?page=2&key=1", "/terms/2026-01#top", "/a%2Db"])
def test_is_local_path_accepts(target):
    assert links.is_local_path(target)


@pytest.mark.parametrize("raw", HOSTILE)
@pytest.mark.one_backend  # input checks no database can change
def test_login_never_redirects_off_site(auth, raw):
    make_user()
    response = auth.login(query=f"next={raw}")
    assert response.status_code == 302 and response.headers["Location"] == DASHBOARD


@pytest.mark.parametrize("raw", ["/%00/evil.com", "%00//evil.com"])
def test_nul_in_next_is_a_bad_request(auth, raw):
    make_user()
    assert auth.login(query=f"next={raw}").status_code == 400


@pytest.mark.parametrize("raw, location", LOCAL)
def test_login_follows_local_next(auth, raw, location):
    make_user()
    assert auth.login(query=f"next={raw}").headers["Location"] == location


def two_factor_user() -> list[str]:
    """A user with two-factor on; their recovery codes (each good once, whatever the clock says)."""
    user = make_user()
    with atomic():
        secret = twofactor.new_secret()
        return twofactor.enable(db.session.get(User, user.id), secret, pyotp.TOTP(secret).now())


@pytest.mark.parametrize("raw", SAMPLE)
@pytest.mark.one_backend  # input checks no database can change
def test_two_factor_step_never_redirects_off_site(client, auth, raw):
    codes = two_factor_user()
    assert auth.login(query=f"next={raw}").headers["Location"] == "/login/2fa"
    response = client.post("/login/2fa", data={"code": codes[0]})
    assert response.status_code == 302 and response.headers["Location"] == DASHBOARD


def test_two_factor_step_redirects_only_to_local_paths(client, auth):
    codes = two_factor_user()
    auth.login(query="next=/%09/evil.com")
    assert client.post("/login/2fa", data={"code": codes[0]}).headers["Location"] == DASHBOARD
    auth.logout()
    auth.login(query="next=/keys/")
    assert client.post("/login/2fa", data={"code": codes[1]}).headers["Location"] == "/keys/"


def consenting_user(auth):
    """Logged in, and asked to accept significant new terms."""
    publish_terms("v1")
    user_who_accepted_the_terms(auth)
    publish_terms("v2", significant=True)


@pytest.mark.parametrize("raw", SAMPLE)
@pytest.mark.one_backend  # input checks no database can change
def test_consent_never_redirects_off_site(client, auth, raw):
    consenting_user(auth)
    response = client.post(f"/consent?next={raw}", data={"decision": "accept"})
    assert response.status_code == 302 and response.headers["Location"] == DASHBOARD


@pytest.mark.parametrize("raw, location", LOCAL)
def test_consent_follows_local_next(client, auth, raw, location):
    consenting_user(auth)
    assert client.post(f"/consent?next={raw}", data={"decision": "accept"}).headers["Location"] == location
