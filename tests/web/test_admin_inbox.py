"""Contact categories and abuse reports, the console's inbox (open first, filtered, paginated), marking
handled and reopening, and replies by mail that carry no header from user input unchecked."""
import uuid

import pytest
from sqlalchemy import select

from portal import announcements, apikeys, catalog, inbox
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import Announcement, AuditEntry, ContactMessage, ContactReply, UsageRecord, User
from tests.factories import make_model, make_user
from tests.web.helpers import outbox

OPERATOR = "ops@example.com"


@pytest.fixture
def app_config():
    return {"OPERATOR_EMAIL": OPERATOR, "MAIL_FROM": "Tollgate <no-reply@tollgate.test>"}


def contact(client, **fields):
    data = {"email": "sender@example.com", "subject": "Hello", "message": "A question.", **fields}
    return client.post("/contact", data=data)


def messages() -> list[ContactMessage]:
    db.session.rollback()
    return list(db.session.scalars(select(ContactMessage).order_by(ContactMessage.id)))


def key_of(email):
    user = make_user(email)
    with atomic():
        key, plaintext = apikeys.issue(db.session.get(User, user.id), "main")
    return user, key, plaintext


def store(n=1, **fields) -> list[int]:
    """Messages stored as the contact form does (without its throttle)."""
    ids = []
    for i in range(n):
        values = {"email": f"s{i}@example.com", "subject": f"subject {i}", "message": "text", "category": "question",
                  **fields}
        ids.append(inbox.submit(**values).message.id)
    return ids


def test_a_message_lands_in_the_queue_and_is_mailed_to_the_operator(app, client):
    sent = contact(client, category="billing", subject="Invoice", message="Where is my invoice?")
    assert sent.status_code == 302
    [row] = messages()
    assert (row.category, row.handled_at, row.reference) == ("billing", None, None)
    [mail] = outbox(app)
    assert mail["To"] == OPERATOR and mail["Subject"] == "[Billing] Invoice"
    body = mail.get_content()
    assert "Where is my invoice?" in body and "sender@example.com" in body
    assert f"http://localhost/admin/inbox/{row.id}" in body


@pytest.mark.one_backend
@pytest.mark.parametrize("fields, error", [
    ({"category": "gossip"}, "Not a valid choice"),
    ({"category": "abuse", "reference": "x" * 201}, "Field cannot be longer than 200 characters"),
    ({"category": "abuse", "reference": "my key, I think"}, "Give the key&#39;s hint as the portal shows it"),
    ({"email": "a@example.com, b@example.com"}, "Enter one email address"),
    ({"email": "a@example.com\r\nBcc: evil@example.com"}, "Enter one email address"),
    ({"email": "<a@example.com>"}, "Enter one email address"),
])
def test_bad_fields_are_refused_with_a_readable_error(app, client, fields, error):
    refused = contact(client, **fields)
    assert refused.status_code == 422 and error in refused.get_data(as_text=True)
    assert messages() == [] and outbox(app) == []


def test_a_subject_with_line_breaks_becomes_one_line(app, client):
    assert contact(client, subject="Hi\r\nBcc: evil@example.com\x1b\u2028").status_code == 302
    [row] = messages()
    assert row.subject == "Hi Bcc: evil@example.com"
    [mail] = outbox(app)
    assert mail["Subject"] == "[A question] Hi Bcc: evil@example.com" and mail["Bcc"] is None


def test_an_abuse_report_by_hint_links_to_the_keys_owner(app, client, auth):
    owner, key, plaintext = key_of("owner@example.com")
    hint_alone = plaintext[-4:]
    for typed in (key.hint, f"tg_...{hint_alone}", hint_alone):
        assert contact(client, category="abuse", subject="Spam", reference=typed).status_code == 302
    assert {m.reference for m in messages()} == {key.hint}
    auth.admin()
    page = client.get(f"/admin/inbox/{messages()[0].id}").get_data(as_text=True)
    assert "the hint matches keys of" in page and f'href="/admin/users/{owner.id}" data-testid="owner"' in page


def test_a_pasted_whole_key_is_cut_to_its_hint_and_the_sender_warned(app, client, auth):
    owner, key, plaintext = key_of("owner@example.com")
    sent = client.post("/contact", follow_redirects=True, data={
        "email": "victim@example.com", "subject": f"Leaked {plaintext}", "category": "abuse",
        "reference": f"  {plaintext}  ", "message": f"I found {plaintext} on a forum."})
    page = sent.get_data(as_text=True)
    assert "Your message contained a whole API key. We kept only its last four characters." in page
    [row] = messages()
    assert (row.reference, row.api_key_id) == (key.hint, key.id)
    assert row.subject == f"Leaked {key.hint}" and row.message == f"I found {key.hint} on a forum."
    assert all(plaintext not in m.as_string() for m in outbox(app))
    auth.admin()
    page = client.get(f"/admin/inbox/{row.id}").get_data(as_text=True)
    assert plaintext not in page and ": a key of" in page and f"/admin/users/{owner.id}" in page


def test_a_whole_key_in_the_message_of_any_category_is_cut_too(app, client):
    _, key, plaintext = key_of("owner@example.com")
    sent = client.post("/contact", follow_redirects=True, data={
        "email": "a@example.com", "subject": "Help", "message": f"my key {plaintext} fails", "category": "question"})
    assert b"Your message contained a whole API key" in sent.data
    [row] = messages()
    assert row.message == f"my key {key.hint} fails" and row.reference is None


def test_an_abuse_report_by_request_id_names_the_key_exactly(app, client, auth):
    owner, key, _ = key_of("owner@example.com")
    model = make_model()
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    with atomic():
        db.session.add(UsageRecord(request_id=request_id, account_id=owner.account.id, api_key_id=key.id,
                                   model_id=model.id, upstream_id=model.upstream_id,
                                   price_id=catalog.current_price(model.id).id, status="ok"))
    assert contact(client, category="abuse", reference=f"X-Request-Id: {request_id}").status_code == 302
    [row] = messages()
    assert (row.reference, row.api_key_id) == (request_id, key.id)
    auth.admin()
    page = client.get(f"/admin/inbox/{row.id}").get_data(as_text=True)
    assert f"<code>{request_id}</code>" in page and f"/admin/users/{owner.id}" in page
    unknown = inbox.submit(email="a@example.com", subject="s", message="m", category="abuse",
                           reference="req_" + "0" * 24).message
    page = client.get(f"/admin/inbox/{unknown.id}").get_data(as_text=True)
    assert "no key of this site matches it" in page


def test_the_queue_shows_open_first_filters_and_paginates(app, client, auth):
    auth.admin()
    store(50)
    abuse = store(1, category="abuse", subject="bad actor")[0]
    handled = store(1, subject="old and done")[0]  # the newest, but handled: after every open one
    with atomic():
        inbox.set_handled(handled, True, Actor.cli())
    first = client.get("/admin/inbox").get_data(as_text=True)
    assert f'data-testid="message-{abuse}"' in first and "old and done" not in first and 'rel="next"' in first
    second = client.get("/admin/inbox?page=2").get_data(as_text=True)
    assert "old and done" in second and second.index("subject 0") < second.index("old and done")
    only_abuse = client.get("/admin/inbox?category=abuse").get_data(as_text=True)
    assert "bad actor" in only_abuse and "subject 1<" not in only_abuse
    only_handled = client.get("/admin/inbox?state=handled").get_data(as_text=True)
    assert "old and done" in only_handled and "bad actor" not in only_handled
    assert "Each new one is also mailed to ops@example.com" in first


def test_without_operator_email_nothing_is_mailed_and_the_console_says_so(app, client, auth):
    app.config["OPERATOR_EMAIL"] = ""
    assert contact(client).status_code == 302
    assert len(messages()) == 1 and outbox(app) == []
    auth.admin()
    page = client.get("/admin/inbox").get_data(as_text=True)
    assert 'data-testid="no-operator-email"' in page and "set <code>OPERATOR_EMAIL</code>" in page


def audit_of(message_id) -> list[str]:
    db.session.rollback()
    return [e.action for e in db.session.scalars(select(AuditEntry).where(
        AuditEntry.target_type == "contact_message", AuditEntry.target_id == str(message_id)).order_by(AuditEntry.id))]


def test_marking_handled_and_reopening_is_audited_and_idempotent(app, client, auth):
    auth.admin()
    [message_id] = store()
    done = client.post(f"/admin/inbox/{message_id}/handled", data={"handled": "yes"}, follow_redirects=True)
    assert f"Message {message_id} is handled." in done.get_data(as_text=True)
    assert "handled" in done.get_data(as_text=True) and messages()[0].handled_by == "admin@example.com"
    again = client.post(f"/admin/inbox/{message_id}/handled", data={"handled": "yes"}, follow_redirects=True)
    assert f"Message {message_id} was already handled: nothing changed." in again.get_data(as_text=True)
    client.post(f"/admin/inbox/{message_id}/handled", data={"handled": "no"})
    assert messages()[0].handled_at is None
    assert audit_of(message_id) == ["contact.handle", "contact.reopen"]
    assert client.post("/admin/inbox/999/handled", data={"handled": "yes"}).status_code == 404


def test_a_reply_is_stored_shown_mailed_from_the_site_and_audited(app, client, auth):
    auth.admin()
    [message_id] = store(email="sender@example.com", subject="Re: why\r\n503?", message="line one\nline two")
    empty = client.post(f"/admin/inbox/{message_id}/reply", data={"body": "   ", "handled": "yes"})
    assert empty.status_code == 422 and b"Write the reply." in empty.data
    replied = client.post(f"/admin/inbox/{message_id}/reply", follow_redirects=True,
                          data={"body": "We were upgrading.\nSorry!", "handled": "yes"})
    assert "Your reply was mailed to sender@example.com." in replied.get_data(as_text=True)
    mail = outbox(app)[-1]
    assert mail["To"] == "sender@example.com" and mail["From"] == "Tollgate <no-reply@tollgate.test>"
    assert mail["Subject"] == "Re: why 503?"
    assert "We were upgrading.\nSorry!" in mail.get_content() and "> line two" in mail.get_content()
    page = client.get(f"/admin/inbox/{message_id}").get_data(as_text=True)
    assert 'data-testid="reply"' in page and "We were upgrading." in page and "handled" in page
    assert audit_of(message_id) == ["contact.reply", "contact.handle"]
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "contact.reply"))
    assert entry.after["to"] == "sender@example.com" and entry.actor == "admin@example.com"


def test_a_reply_to_an_address_that_could_carry_headers_is_refused(app, client, auth):
    auth.admin()
    with atomic():  # stored before the form checked addresses
        row = ContactMessage(email="a@example.com, victim@example.com", subject="s", message="m")
        db.session.add(row)
    refused = client.post(f"/admin/inbox/{row.id}/reply", data={"body": "hello", "handled": "yes"})
    assert refused.status_code == 422 and b"Enter one email address" in refused.data
    db.session.rollback()
    assert db.session.scalars(select(ContactReply)).all() == [] and outbox(app) == []
    assert audit_of(row.id) == []


# --- announcements ------------------------------------------------------------------------------------

def test_the_announcement_page_previews_the_count_and_sends_after_confirmation(app, client, auth):
    auth.admin()  # verified and active, but no call or top-up: in "all" only
    for n in range(2):
        make_user(f"u{n}@example.com")
    page = client.get("/admin/announcements").get_data(as_text=True)
    assert 'data-testid="count-all">3<' in page and 'data-testid="count-active">0<' in page
    form = {"subject": "Maintenance tonight", "body": "Down at 22:00 UTC.\n<b>not html</b>", "audience": "all"}
    preview = client.post("/admin/announcements/send", data={**form, "action": "preview"})
    text = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'data-testid="preview"' in text and "&lt;b&gt;not html&lt;/b&gt;" in text
    assert "to 3 All users" in text
    unconfirmed = client.post("/admin/announcements/send", data={**form, "action": "send"})
    assert unconfirmed.status_code == 422 and b"Tick the box to confirm" in unconfirmed.data
    nobody = client.post("/admin/announcements/send", data={**form, "audience": "active", "confirm": "yes"})
    assert nobody.status_code == 422 and b"No one is in that audience yet" in nobody.data
    db.session.rollback()
    assert db.session.scalars(select(Announcement)).all() == []
    sent = client.post("/admin/announcements/send", data={**form, "action": "send", "confirm": "yes"},
                       follow_redirects=True)
    text = sent.get_data(as_text=True)
    assert "is on its way to 3 people, 60 a minute at most" in text
    assert "0 of 3 sent" in text and "sending" in text
    db.session.rollback()
    row = db.session.scalar(select(Announcement))
    assert row.created_by == "admin@example.com" and row.recipients == 3
    assert outbox(app) == []  # the worker sends it, not the request
    assert announcements.step("test-worker", limit=10) == 3
    assert "3 of 3 sent" in client.get("/admin/announcements").get_data(as_text=True)


@pytest.mark.one_backend
@pytest.mark.parametrize("raw", ["ops@example.com, other@example.com", "Ops <ops@example.com>", "ops",
                                 "ops@example.com\nBcc: x@example.com"])
def test_operator_email_must_be_one_plain_address(tmp_path, raw):
    from portal.config import ConfigError, load
    with pytest.raises(ConfigError, match="OPERATOR_EMAIL must be one email address"):
        load(str(tmp_path), {"OPERATOR_EMAIL": raw})
    assert load(str(tmp_path), {"OPERATOR_EMAIL": " ops@example.com "})["OPERATOR_EMAIL"] == "ops@example.com"
    assert load(str(tmp_path), {})["ANNOUNCE_PER_MINUTE"] == 60
