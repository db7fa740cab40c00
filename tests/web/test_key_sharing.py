"""Key sharing, end to end: calls through real waitress from distinct loopback addresses (Linux
routes all of 127.0.0.0/8 to loopback, so each is a distinct client), the flag, the one mail, and
the key page's one-click rotation."""

import pytest
from sqlalchemy import select

from portal import apikeys, notices
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, KeyAddress, User
from tests.factories import make_model
from tests.web.helpers import call_from, outbox

pytestmark = pytest.mark.slow  # serves the app on loopback

CREDIT = 5_000_000
HX = {"HX-Request": "true"}


@pytest.fixture
def app_config():
    return {"KEY_SHARING_ADDRESSES_PER_DAY": 2}


def ok(gateway, key, source="127.0.0.1"):
    status, _, body = call_from(gateway, key, source)
    assert status == 200, body
    return body


def sharing_mails(app, to):
    notices.drain()
    return [m for m in outbox(app) if m["To"] == to and "was used from" in m["Subject"]]


def key_row(key_id):
    db.session.rollback()
    return db.session.get(ApiKey, key_id)


@pytest.fixture
def owner(auth):
    make_model("echo-1")
    return auth.user("owner@example.com", credit=CREDIT)


@pytest.fixture
def key(owner):
    with atomic():
        key, plaintext = apikeys.issue(db.session.get(User, owner.id), "laptop")
    return key.id, plaintext


def test_addresses_are_recorded_per_key_and_day(app, gateway, key):
    key_id, plaintext = key
    for source in ("127.0.0.11", "127.0.0.11", "127.0.0.12"):
        ok(gateway, plaintext, source)
    db.session.rollback()
    rows = db.session.scalars(select(KeyAddress).where(KeyAddress.api_key_id == key_id)).all()
    assert sorted(r.ip for r in rows) == ["127.0.0.11", "127.0.0.12"]
    assert {r.day for r in rows} == {r.first_seen_at.date() for r in rows}
    assert key_row(key_id).sharing_flagged_at is None


def test_crossing_the_threshold_flags_the_key_and_mails_its_owner_once(app, gateway, client, key):
    key_id, plaintext = key
    for source in ("127.0.0.11", "127.0.0.12", "127.0.0.11"):
        ok(gateway, plaintext, source)
    assert key_row(key_id).sharing_flagged_at is None and sharing_mails(app, "owner@example.com") == []

    ok(gateway, plaintext, "127.0.0.13")  # a third address: more than 2
    key = key_row(key_id)
    assert key.sharing_flagged_at is not None and key.sharing_addresses == 3
    [mail] = sharing_mails(app, "owner@example.com")
    assert "laptop" in mail["Subject"] and "3 addresses" in mail["Subject"]
    body = mail.get_content()
    assert "http://localhost/keys/" in body and "Rotate this key" in body and plaintext not in body

    for source in ("127.0.0.14", "127.0.0.13", "127.0.0.15"):
        ok(gateway, plaintext, source)  # the key still works: the flag is for people to look at
    assert len(sharing_mails(app, "owner@example.com")) == 1
    assert key_row(key_id).sharing_addresses == 3

    page = client.get("/keys/").get_data(as_text=True)
    assert 'data-testid="key-sharing"' in page and "3 different addresses" in page
    assert f'action="/keys/{key_id}/rotate"' in page and "Rotate this key" in page


def test_an_unflagged_key_shows_no_warning(app, client, key):
    page = client.get("/keys/").get_data(as_text=True)
    assert 'data-testid="key-sharing"' not in page


def test_rotate_replaces_the_key_with_the_same_settings(app, gateway, client, key):
    key_id, old = key
    with atomic():
        row = db.session.get(ApiKey, key_id)
        apikeys.set_limits(row, apikeys.Limits(allowed_models=["echo-1"], spend_cap_monthly=2_000_000,
                                               max_concurrency=4, ip_allowlist="127.0.0.0/8"))
        row.sharing_flagged_at, row.sharing_addresses = row.created_at, 12
    ok(gateway, old)

    response = client.post(f"/keys/{key_id}/rotate", headers=HX)
    assert response.status_code == 200 and "no-store" in response.headers["Cache-Control"]
    html = response.get_data(as_text=True)
    new = html.split('data-testid="new-key">')[1].split("<")[0]
    assert new.startswith("tg_") and new != old

    status, _, body = call_from(gateway, old)
    assert status == 401 and "revoked" in body["error"]["message"]
    ok(gateway, new)
    db.session.rollback()
    before = db.session.get(ApiKey, key_id)
    after = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == apikeys.hash_key(new)))
    same = ("user_id", "name", "allowed_models", "ip_allowlist", "spend_cap_total", "spend_cap_monthly",
            "max_concurrency", "expires_at")
    assert [getattr(after, n) for n in same] == [getattr(before, n) for n in same]
    assert after.sharing_flagged_at is None and before.revoked_at is not None
    page = client.get("/keys/").get_data(as_text=True)
    assert 'data-testid="key-sharing"' not in page and new not in page

    again = client.post(f"/keys/{key_id}/rotate")  # a revoked key cannot be rotated
    assert again.status_code == 422 and "revoked already" in again.get_data(as_text=True)


def test_only_the_owner_can_rotate(app, client, auth, key):
    key_id, _ = key
    auth.logout()
    auth.user("stranger@example.com")
    assert client.post(f"/keys/{key_id}/rotate").status_code == 404
    assert key_row(key_id).revoked_at is None


def test_rotate_needs_the_form_token(app, client, key):
    key_id, _ = key
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post(f"/keys/{key_id}/rotate").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert key_row(key_id).revoked_at is None
