"""Links in mail and on pages come from PUBLIC_URL, never from the request; other hosts get 400."""
import json

import pytest

from portal import links
from tests.factories import PASSWORD, make_user
from tests.web.helpers import last_link, outbox, publish_terms, register

PUBLIC = "https://portal.example"


@pytest.fixture
def app_config():
    return {"PUBLIC_URL": PUBLIC}


# Ways a client can name a host of its choosing. Werkzeug compares hosts exactly, so each
# spelling of the attacker's host is refused rather than normalised into something trusted.
REFUSED = [
    {"base_url": "http://attacker.example"},
    {"base_url": "http://attacker.example:8000"},
    {"base_url": "http://ATTACKER.EXAMPLE"},
    {"base_url": "http://attacker.example."},
    {"base_url": "https://attacker.example"},
    {"headers": {"Host": "portal.example.attacker.example"}},
    {"headers": {"Host": "localhost@attacker.example"}},
]
# Trusted hosts, or an X-Forwarded-Host the app never believes: served, with links from PUBLIC_URL.
SERVED = [
    {},
    {"base_url": "http://127.0.0.1:5555"},
    {"base_url": "http://localhost:8000"},
    {"headers": {"X-Forwarded-Host": "attacker.example"}},
    {"headers": {"X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "http",
                 "Forwarded": "host=attacker.example"}},
]


@pytest.mark.parametrize("request_kwargs", REFUSED)
def test_reset_request_for_another_host_is_refused_and_mails_nothing(app, client, request_kwargs):
    make_user()
    response = client.post("/forgot", data={"email": "person@example.com"}, **request_kwargs)
    assert response.status_code == 400
    assert b"Wrong address" in response.data and f'href="{PUBLIC}/"'.encode() in response.data
    assert outbox(app) == []


@pytest.mark.parametrize("request_kwargs", SERVED)
def test_reset_link_is_built_from_public_url(app, client, request_kwargs):
    make_user()
    response = client.post("/forgot", data={"email": "person@example.com"}, follow_redirects=True, **request_kwargs)
    assert response.status_code == 200
    assert last_link(app, "person@example.com").startswith(f"{PUBLIC}/reset/")


@pytest.mark.parametrize("request_kwargs", SERVED)
def test_verification_links_are_built_from_public_url(app, client, request_kwargs):
    publish_terms()
    client.post("/register", data={"email": "new@example.com", "password": "a long passphrase", "accept_terms": "y"},
                **request_kwargs)
    assert last_link(app, "new@example.com").startswith(f"{PUBLIC}/verify/")


@pytest.mark.parametrize("request_kwargs", SERVED)
def test_resent_verification_link_is_built_from_public_url(app, client, auth, request_kwargs):
    make_user(verified=False)
    auth.login(base_url=request_kwargs.get("base_url"))
    client.post("/verify/resend", **request_kwargs)
    assert last_link(app, "person@example.com").startswith(f"{PUBLIC}/verify/")


def test_already_registered_notice_links_to_public_url(app, client):
    publish_terms()
    make_user("taken@example.com")
    register(client, "taken@example.com")
    body = [m for m in outbox(app) if m["To"] == "taken@example.com"][-1].get_content()
    assert f"{PUBLIC}/login" in body and f"{PUBLIC}/forgot" in body and "localhost" not in body


@pytest.mark.parametrize("request_kwargs", SERVED)
def test_email_change_link_is_built_from_public_url(app, client, auth, request_kwargs):
    make_user()
    auth.login(base_url=request_kwargs.get("base_url"))
    client.post("/account/email", data={"em-email": "new@example.com", "em-password": PASSWORD}, **request_kwargs)
    assert last_link(app, "new@example.com").startswith(f"{PUBLIC}/account/email/")


def test_new_key_page_shows_public_url(client, auth):
    make_user()
    auth.login(base_url="http://127.0.0.1:5555")
    # post/redirect/get: the new key (and its snippets) shows on the GET the create redirects to
    html = client.post("/keys/", data={"name": "laptop"}, base_url="http://127.0.0.1:5555",
                       follow_redirects=True).get_data(as_text=True)
    assert 'data-testid="new-key"' in html
    assert f'OpenAI(base_url="{PUBLIC}/v1"' in html and f"curl {PUBLIC}/v1/chat/completions" in html
    assert "127.0.0.1" not in html


def test_api_requests_for_another_host_get_json_400(client):
    response = client.post("/v1/chat/completions", json={"model": "x"}, base_url="http://attacker.example")
    assert response.status_code == 400 and response.mimetype == "application/json"
    assert "not trusted" in json.loads(response.data)["error"]["message"]


def test_public_url_builds_links_outside_requests(app):
    assert links.public_url("auth.reset", token="abc") == f"{PUBLIC}/reset/abc"
    assert links.site_root() == PUBLIC
