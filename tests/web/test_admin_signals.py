"""The console's Signals page: flagged keys, and accounts sharing a card (fingerprint stored from
the real webhook), a sign-up address (through the real registration form) or their keys' addresses."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import apikeys, signals
from portal.database import atomic
from portal.extensions import db
from portal.models import Payment, User, utcnow
from tests.conftest import stripe_settings
from tests.factories import make_user, open_checkout
from tests.fake_stripe import signed
from tests.web.helpers import publish_terms, register


@pytest.fixture
def app_config(fake_stripe):
    return {**stripe_settings(fake_stripe), "KEY_SHARING_ADDRESSES_PER_DAY": 2}


def pay_by_card(client, fake, user, fingerprint):
    session_id = open_checkout(user, 1_000)
    fake.pay(session_id, fingerprint=fingerprint)
    payload, header = signed(fake.session_event("checkout.session.completed", session_id))
    response = client.post("/stripe/webhook", data=payload, headers={"Stripe-Signature": header},
                           content_type="application/json")
    assert response.status_code == 200, response.data


def key_used_from(user, *ips):
    with atomic():
        key, _ = apikeys.issue(db.session.get(User, user.id), "k")
    for ip in ips:
        with atomic():
            signals.record(key.id, ip, utcnow(), 2)
    return key.id


def section(html: str, anchor: str) -> str:
    return html.split(f'id="{anchor}"')[1].split("</section>")[0]


def test_the_webhook_stores_the_card_fingerprint(app, client, fake_stripe):
    user = make_user("card@example.com")
    pay_by_card(client, fake_stripe, user, "fp_stored")
    db.session.rollback()
    assert db.session.scalar(select(Payment.card_fingerprint)) == "fp_stored"


def test_the_page_lists_each_kind_of_group(app, client, auth, fake_stripe):
    # One card, two accounts (and a third account with its own card).
    card_a, card_b, own_card = (make_user(f"{n}@example.com") for n in ("card-a", "card-b", "own-card"))
    for user, fingerprint in ((card_a, "fp_shared"), (card_b, "fp_shared"), (own_card, "fp_alone")):
        pay_by_card(client, fake_stripe, user, fingerprint)
    # Two sign-ups from one address, one from another.
    publish_terms()
    client.environ_base["REMOTE_ADDR"] = "203.0.113.77"
    for email in ("signup-1@example.com", "signup-2@example.com"):
        assert register(client, email).status_code == 200
    client.environ_base["REMOTE_ADDR"] = "198.51.100.3"
    assert register(client, "signup-alone@example.com").status_code == 200
    client.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    # Two accounts' keys used from one address; one key used from three (flagged).
    key_used_from(make_user("addr-a@example.com"), "192.0.2.10")
    key_used_from(make_user("addr-b@example.com"), "192.0.2.10", "192.0.2.11")
    key_used_from(make_user("shared-key@example.com"), "192.0.2.21", "192.0.2.22", "192.0.2.23")

    admin = auth.admin()
    response = client.get("/admin/signals")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/admin/signals"' in html  # in the console's navigation

    def person(email):
        user_id = db.session.scalar(select(User.id).where(User.email == email))
        return f'<a href="/admin/users/{user_id}">{email}</a>'

    cards = section(html, "shared-cards")
    assert "fp_shared" in cards and person("card-a@example.com") in cards and person("card-b@example.com") in cards
    assert "fp_alone" not in cards and "own-card@" not in cards
    signups = section(html, "signup-addresses")
    assert "203.0.113.77" in signups and person("signup-1@example.com") in signups
    assert person("signup-2@example.com") in signups and "signup-alone" not in signups
    shared = section(html, "key-addresses")
    assert "192.0.2.10" in shared and person("addr-a@example.com") in shared and person("addr-b@example.com") in shared
    assert "192.0.2.11" not in shared and "shared-key@" not in shared and admin.email not in shared
    keys = section(html, "flagged-keys")
    assert person("shared-key@example.com") in keys and "addresses" in keys and "addr-b@" not in keys

    # The person's page says so too, next to the key.
    owner = db.session.scalar(select(User.id).where(User.email == "shared-key@example.com"))
    page = client.get(f"/admin/users/{owner}").get_data(as_text=True)
    assert 'data-testid="key-shared"' in page and "3 addresses" in page


def test_an_empty_review_says_so(app, client, auth):
    auth.admin()
    html = client.get("/admin/signals?days=abc").get_data(as_text=True)
    for text in ("No key is flagged.", "No card paid for more than one account.",
                 "No address signed up more than one account.", "No address used the keys of more than one account."):
        assert text in html


def test_older_sign_ups_fall_outside_the_look_back(app, client, auth):
    publish_terms()
    client.environ_base["REMOTE_ADDR"] = "203.0.113.88"
    for email in ("old-1@example.com", "old-2@example.com"):
        assert register(client, email).status_code == 200
    client.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    with atomic():
        for user in db.session.scalars(select(User).where(User.email.like("old-%"))):
            user.created_at = utcnow() - timedelta(days=40)
    auth.admin()
    assert "203.0.113.88" not in client.get("/admin/signals").get_data(as_text=True)
    assert "203.0.113.88" in client.get("/admin/signals?days=60").get_data(as_text=True)


def test_an_admin_clears_a_false_positive_with_a_reason(app, client, auth):
    from portal.models import ApiKey, AuditEntry
    key_id = key_used_from(make_user("office@example.com"), "192.0.2.31", "192.0.2.32", "192.0.2.33")
    admin = auth.admin()
    page = client.get("/admin/signals").get_data(as_text=True)
    form = section(page, "flagged-keys")
    assert f'action="/admin/signals/keys/{key_id}/clear"' in form and 'name="reason"' in form and "csrf_token" in form

    refused = client.post(f"/admin/signals/keys/{key_id}/clear", data={"reason": "  "})
    assert refused.status_code == 422
    assert 'data-testid="action-error"' in refused.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).sharing_flagged_at is not None

    done = client.post(f"/admin/signals/keys/{key_id}/clear", data={"reason": "one office, many laptops"})
    assert done.status_code == 303
    assert "is cleared" in client.get(done.headers["Location"]).get_data(as_text=True)
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    assert key.sharing_flagged_at is None and key.sharing_cleared_at is not None
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "key.sharing_clear"))
    assert (entry.actor_id, entry.reason, entry.target_id) == (admin.id, "one office, many laptops", str(key_id))
    assert "No key is flagged." in client.get("/admin/signals").get_data(as_text=True)
    # Cleared already: said above the table, nothing changes.
    again = client.post(f"/admin/signals/keys/{key_id}/clear", data={"reason": "twice"})
    assert again.status_code == 422 and "not flagged" in again.get_data(as_text=True)
    assert client.post("/admin/signals/keys/999999/clear", data={"reason": "x"}).status_code == 404
