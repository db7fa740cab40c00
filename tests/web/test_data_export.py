"""The data export: everything about the person as one JSON download, nothing secret, nothing of anyone
else, and read in batches so a big account does not fill the memory."""
import json

from sqlalchemy import insert, select

from portal import dataexport, legal, users
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, ContactMessage, ContactReply, LegalKind, UsageRecord, User
from tests.factories import make_user
from tests.web.helpers import publish_terms
from tests.web.test_admin_users import calls_from


def uid(email):
    db.session.rollback()
    return users.find_user(email).id


def two_people():
    """Mia (the one exporting) and Ned (someone else), each with a key, calls, a message and a consent."""
    publish_terms("v3")
    secrets = {}
    for email, address in (("mia@example.com", "198.51.100.7"), ("ned@example.com", "203.0.113.99")):
        make_user(email, credit=2_000_000)
        with atomic():
            user = users.find_user(email)
            legal.accept(user, legal.current(LegalKind.TERMS), address)
            message = ContactMessage(user_id=user.id, email=email, subject=f"hello from {email}",
                                     message="a question", ip=address)
            db.session.add(message)
            db.session.flush()
            db.session.add(ContactReply(message_id=message.id, author="ops@example.com", body=f"answer to {email}"))
        _, plaintext = calls_from(email, [address, address], key_name=f"key-of-{email.split('@')[0]}")
        secrets[email] = plaintext
    return secrets


def download(client):
    response = client.get("/account/export.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="my-data-')
    assert "no-store" in response.headers["Cache-Control"]
    return response.get_data(as_text=True)


def test_the_export_holds_the_persons_data_and_nothing_secret_or_of_anyone_else(client, auth):
    secrets = two_people()
    with atomic():
        mia = db.session.get(User, uid("mia@example.com"))
        mia.totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    assert auth.login("mia@example.com").status_code == 302
    text = download(client)
    data = json.loads(text)

    assert data["profile"]["email"] == "mia@example.com" and data["profile"]["account"]["balance"] < 2_000_000
    assert [k["name"] for k in data["api_keys"]] == ["key-of-mia"]
    assert len(data["usage"]) == 2 and {u["client_ip"] for u in data["usage"]} == {"198.51.100.7"}
    assert data["usage"][0]["model"] == "echo-1" and data["usage"][0]["key"].startswith("tg_…")
    assert [e["kind"] for e in data["statement"]] == ["grant", "charge", "charge"]
    assert [(c["document"], c["version"]) for c in data["consents"]] == [("terms", "v3")]
    assert [m["subject"] for m in data["contact_messages"]] == ["hello from mia@example.com"]
    assert [r["body"] for r in data["contact_messages"][0]["replies"]] == ["answer to mia@example.com"]
    assert data["payments"] == [] and data["refund_requests"] == []

    db.session.rollback()
    mine = db.session.get(User, uid("mia@example.com"))
    key_hash = db.session.scalar(select(ApiKey.key_hash).where(ApiKey.user_id == mine.id))
    for secret in (secrets["mia@example.com"], key_hash, mine.password_hash, mine.totp_secret,
                   "password_hash", "key_hash", "totp_secret", "entry_hash"):
        assert secret not in text
    ned = db.session.get(User, uid("ned@example.com"))
    for theirs in ("ned@example.com", "203.0.113.99", "key-of-ned", secrets["ned@example.com"][-4:], "answer to ned"):
        assert theirs not in text
    ned_requests = db.session.scalars(select(UsageRecord.request_id).where(UsageRecord.account_id == ned.account.id))
    for request_id in ned_requests:
        assert request_id not in text


def test_a_suspended_person_can_download_it_and_the_account_page_links_it(client, auth):
    make_user("sus@example.com")
    with atomic():
        users.suspend(users.find_user("sus@example.com"), "spam")
    assert auth.login("sus@example.com").status_code == 302
    assert 'href="/account/export.json"' in client.get("/account/").get_data(as_text=True)
    assert json.loads(download(client))["profile"]["status"] == "suspended"


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/account/export.json")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_big_account_is_streamed_in_batches(app, client, auth, monkeypatch):
    make_user("big@example.com", credit=50_000_000)
    calls_from("big@example.com", ["198.51.100.7"])
    db.session.rollback()
    user = users.find_user("big@example.com")
    template = db.session.scalar(select(UsageRecord))
    columns = {c.key: getattr(template, c.key) for c in UsageRecord.__table__.columns if c.key not in ("id",)}
    with atomic():
        db.session.execute(insert(UsageRecord), [dict(columns, request_id=f"req-{i:06d}") for i in range(3000)])
    user_id = user.id
    db.session.rollback()
    monkeypatch.setattr(dataexport, "BATCH", 200)
    largest, chunks, usage_seen = 0, [], 0
    for chunk in dataexport.json_chunks(user_id):
        chunks.append(chunk)
        usage_seen += chunk.count('"request_id"')
        largest = max(largest, len(db.session.identity_map))
    data = json.loads("".join(chunks))
    assert len(data["usage"]) == usage_seen == 3001
    assert data["usage"][-1]["request_id"] == "req-002999"
    # Records are let go as they are written: the session never holds more than about one batch.
    assert largest < 400, largest
    assert auth.login("big@example.com").status_code == 302
    assert len(json.loads(download(client))["usage"]) == 3001
