"""The API keys page: create (shown once), rename, revoke, limits; htmx fragments and plain forms."""
from sqlalchemy import select

from portal import apikeys, catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey
from portal.pricing import Price
from tests.factories import make_user

HX = {"HX-Request": "true"}


def test_create_shows_the_key_once_with_snippets(client, auth):
    auth.user()
    response = client.post("/keys/", data={"name": "laptop"})
    assert response.status_code == 303 and response.headers["Location"] == "/keys/"
    shown = client.get("/keys/")
    assert "no-store" in shown.headers["Cache-Control"]
    html = shown.get_data(as_text=True)
    db.session.rollback()
    key = db.session.scalar(select(ApiKey))
    plaintext = html.split('data-testid="new-key">')[1].split("<")[0]
    assert apikeys.hash_key(plaintext) == key.key_hash and key.name == "laptop"
    for snippet in ("curl http://localhost/v1/chat/completions", 'OpenAI(base_url="http://localhost/v1"',
                    'Anthropic(base_url="http://localhost"', "export ANTHROPIC_BASE_URL=http://localhost"):
        assert snippet in html
    later = client.get("/keys/").get_data(as_text=True)
    assert plaintext not in later and key.hint in later


def test_create_as_htmx_fragment(client, auth):
    auth.user()
    response = client.post("/keys/", data={"name": "ci"}, headers=HX)
    html = response.get_data(as_text=True)
    assert "HX-Request" in response.headers["Vary"]
    assert "<html" not in html and 'data-testid="new-key"' in html
    full = client.get("/keys/")
    assert "HX-Request" in full.headers["Vary"] and "<html" in full.get_data(as_text=True)


def test_unverified_users_cannot_create_keys(client, auth):
    auth.user(verified=False)
    page = client.get("/keys/").get_data(as_text=True)
    assert "Confirm your email address to create API keys." in page
    response = client.post("/keys/", data={"name": "x"})
    assert response.status_code == 422 and b"Confirm your email address to create API keys." in response.data
    assert db.session.scalar(select(ApiKey)) is None


def test_rename_and_revoke(client, auth):
    user = auth.user()
    with atomic():
        key, _ = apikeys.issue(user, "old")
        key_id = key.id
    assert client.post(f"/keys/{key_id}/rename", data={"name": ""}).status_code == 422
    assert client.post(f"/keys/{key_id}/rename", data={"name": "new"}).status_code == 303
    htmx = client.post(f"/keys/{key_id}/rename", data={"name": "newer"}, headers=HX)
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"] == "/keys/"
    confirm = client.get(f"/keys/{key_id}/revoke")
    assert b"cannot be undone" in confirm.data
    assert client.post(f"/keys/{key_id}/revoke").status_code == 303
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    assert key.name == "newer" and key.revoked_at is not None


def test_other_peoples_keys_are_404(client, auth):
    auth.user()
    stranger = make_user("stranger@example.com")
    with atomic():
        key, _ = apikeys.issue(stranger, "theirs")
        key_id = key.id
    for path in (f"/keys/{key_id}/rename", f"/keys/{key_id}/revoke", f"/keys/{key_id}/limits"):
        assert client.get(path).status_code == 404
        assert client.post(path, data={"name": "mine"}).status_code == 404
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).revoked_at is None


def test_limits_form(client, auth):
    user = auth.user()
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("echo-1", "echo", Price(input=1, output=1))
        catalog.set_model("echo-2", "echo", Price(input=1, output=1))
        key, _ = apikeys.issue(user, "limited")
        key_id = key.id
    data = {"allowed_models": ["echo-2"], "spend_cap_total": "10", "spend_cap_monthly": "2.50",
            "expires_on": "2099-12-31", "ip_allowlist": "10.0.0.0/8\n2001:db8::1"}
    assert client.post(f"/keys/{key_id}/limits", data=data).status_code == 303
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    assert (key.allowed_models, key.spend_cap_total, key.spend_cap_monthly, key.ip_allowlist) == \
        ('["echo-2"]', 10_000_000, 2_500_000, "10.0.0.0/8\n2001:db8::1/128")
    assert key.expires_at.date().isoformat() == "2099-12-31"
    form = client.get(f"/keys/{key_id}/limits").get_data(as_text=True)
    assert 'value="10.00"' in form and 'value="2.50"' in form
    listing = client.get("/keys/").get_data(as_text=True)
    assert "this month: $0.00 of $2.50" in listing


def test_limits_form_errors(client, auth):
    user = auth.user()
    with atomic():
        key, _ = apikeys.issue(user, "limited")
        key_id = key.id
    for data, message in [({"spend_cap_total": "-1"}, b"Enter an amount in US dollars, like 5 or 12.50"),
                          ({"spend_cap_total": "0"}, b"enter an amount above zero"),
                          ({"ip_allowlist": "not-an-ip"}, b"Not an IP address or network: not-an-ip."),
                          ({"expires_on": "2001-01-01"}, b"That day has passed"),
                          ({"allowed_models": ["ghost"]}, b"not offered any more: ghost")]:
        response = client.post(f"/keys/{key_id}/limits", data=data)
        assert response.status_code == 422 and message in response.data, (data, response.data[-2000:])
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    assert (key.spend_cap_total, key.ip_allowlist, key.expires_at) == (None, None, None)


def test_limits_form_lowers_calls_at_once_but_never_raises_them(app, client, auth):
    app.config.update(PROXY_MAX_INFLIGHT=40)  # so the operator's per-key limit is 10
    user = auth.user()
    with atomic():
        key, _ = apikeys.issue(user, "limited")
        key_id = key.id
    page = client.get(f"/keys/{key_id}/limits").get_data(as_text=True)
    assert 'name="max_concurrency"' in page and 'max="10"' in page
    for value in ("11", "0", "-1", "two"):
        response = client.post(f"/keys/{key_id}/limits", data={"max_concurrency": value})
        assert response.status_code == 422, value
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).max_concurrency is None
    assert client.post(f"/keys/{key_id}/limits", data={"max_concurrency": "3"}).status_code == 303
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).max_concurrency == 3
    assert 'value="3"' in client.get(f"/keys/{key_id}/limits").get_data(as_text=True)
    assert client.post(f"/keys/{key_id}/limits", data={"max_concurrency": ""}).status_code == 303
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).max_concurrency is None
