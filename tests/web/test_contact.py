"""The contact form's throttle: CONTACT_LIMIT messages per client address an hour, counted before
they are checked, so parallel posts cannot slip past it. Counts rows and statuses, never time."""
from sqlalchemy import select

from portal.extensions import db
from portal.models import ContactMessage
from portal.views.pages import CONTACT_LIMIT
from tests.web.helpers import in_parallel, meet_at_the_counters


def send(client, i):
    return client.post("/contact", data={"email": "a@example.com", "subject": f"hi {i}", "message": "hello"})


def stored() -> int:
    db.session.rollback()  # see what the requests committed
    return db.session.scalar(select(db.func.count()).select_from(ContactMessage))


def test_parallel_messages_from_one_address_store_at_most_the_limit(app, client, monkeypatch):
    meet_at_the_counters(monkeypatch, app, CONTACT_LIMIT + 7)
    # Each thread its own browser (the `client` fixture makes app.test_client() isolated), all at one address.
    responses = in_parallel(CONTACT_LIMIT + 7, lambda i: send(app.test_client(), i))
    assert sorted(r.status_code for r in responses) == [302] * CONTACT_LIMIT + [429] * 7
    assert all(b"You have sent several messages already" in r.data for r in responses if r.status_code == 429)
    assert stored() == CONTACT_LIMIT


def test_the_limit_is_per_address(app, client):
    for i in range(CONTACT_LIMIT):
        assert send(client, i).status_code == 302
    assert send(client, "again").status_code == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert send(elsewhere, "elsewhere").status_code == 302
    assert stored() == CONTACT_LIMIT + 1
