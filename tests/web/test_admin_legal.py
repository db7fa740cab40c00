"""The console's legal section: versions with acceptances and declines, the editor's preview,
publishing (with an effective date, its notice mail and banner), and re-consent from the date."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from portal import legal, notices
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry, LegalDocument, LegalKind, TermsAcceptance, User
from tests.factories import make_user
from tests.web.helpers import outbox, publish_terms, user_who_accepted_the_terms


def in_days(days: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).date().isoformat()


def form(**overrides):
    data = {"version": "v2", "body": "# Terms v2\n\nBe kind.", "effective_at": "", "reason": "",
            "action": "publish", "confirm": "yes"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def versions(kind=LegalKind.TERMS) -> list[str]:
    db.session.rollback()
    return [d.version for d in legal.versions(kind)]


def audit_entries(action="legal.") -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action.startswith(action))
                                   .order_by(AuditEntry.id)))


def test_the_overview_shows_each_kind_with_its_versions_and_counts(client, auth):
    publish_terms("v1")
    person = make_user("reader@example.com")
    with atomic():
        legal.accept(db.session.get(User, person.id), legal.current(LegalKind.TERMS), "127.0.0.1")
    publish_terms("p1", kind=LegalKind.PRIVACY)
    auth.admin()
    page = client.get("/admin/legal")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for heading in ("Terms of service", "Privacy policy", "Refund policy"):
        assert heading in html
    assert 'href="/admin/legal/terms/v1"' in html and 'href="/admin/legal/privacy/p1"' in html
    assert 'href="/admin/legal/terms/v1?list=declined"' in html
    assert ">1</a>" in html  # one acceptance of v1
    assert 'href="/admin/legal"' in html and 'aria-current="page"' in html  # the console nav
    assert client.get("/admin/legal/nope").status_code == 404
    assert client.get("/admin/legal/terms/nope").status_code == 404


def test_the_editor_starts_from_the_newest_text_and_previews_it_escaped(client, auth):
    with atomic():
        legal.publish(LegalKind.TERMS, "v1", "# Old terms\n\nKeep **calm**.")
    auth.admin()
    editor = client.get("/admin/legal/terms").get_data(as_text=True)
    assert "# Old terms\n\nKeep **calm**.</textarea>" in editor
    body = "# Draft\n\n<script>alert(1)</script> and **bold**"
    preview = client.post("/admin/legal/terms", data=form(action="preview", body=body, confirm=None))
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert "<h1>Draft</h1>" in html and "<strong>bold</strong>" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and **bold**</textarea>" in html  # the draft is kept
    # htmx: only the preview block, to swap in place.
    fragment = client.post("/admin/legal/terms", data=form(action="preview", body="# Hi"),
                           headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    text = fragment.get_data(as_text=True)
    assert text.strip().startswith('<section id="legal-preview"') and "<h1>Hi</h1>" in text and "<html" not in text
    assert versions() == ["v1"]  # a preview publishes nothing
    assert audit_entries() == []


@pytest.mark.parametrize("overrides, says", [
    ({"confirm": None}, "Tick the box to confirm"),
    ({"version": ""}, "version must be 1-40 characters"),
    ({"body": "  "}, "the document is empty"),
    ({"version": "v1"}, "already published"),
    ({"effective_at": "next week", "significant": "yes"}, "is not a date"),
    ({"effective_at": "2020-01-01", "significant": "yes"}, "must be in the future"),
    ({"effective_at": "2999-01-01"}, "Only a significant change can take effect later"),
])
def test_a_refused_publish_says_why_and_keeps_the_draft(client, auth, overrides, says):
    publish_terms("v1")
    auth.admin()
    response = client.post("/admin/legal/terms", data=form(**{"body": "# My careful draft", **overrides}))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert says in html and "The version was not published" in html
    if "body" not in overrides:
        assert "# My careful draft</textarea>" in html
    assert versions() == ["v1"] and audit_entries() == []


def test_publishing_a_minor_change_puts_it_in_force_at_once(client, auth):
    publish_terms("v1")
    auth.admin()
    response = client.post("/admin/legal/terms", data=form(reason="typo in section 2"))
    assert response.status_code == 303 and response.headers["Location"] == "/admin/legal/terms"
    assert "Published version v2, in force now." in client.get("/admin/legal/terms").get_data(as_text=True)
    db.session.rollback()
    assert legal.current(LegalKind.TERMS).version == "v2"
    [entry] = audit_entries()
    assert (entry.action, entry.actor, entry.ip, entry.reason) == ("legal.publish", "admin@example.com", "127.0.0.1",
                                                                   "typo in section 2")
    assert entry.after["version"] == "v2" and entry.after["significant"] is False
    notices.drain()
    assert outbox(app=client.application) == []  # no notice for a change in force at once


def test_a_scheduled_change_mails_everyone_shows_a_banner_and_asks_consent_from_its_date(client, auth):
    publish_terms("v1")
    user = user_who_accepted_the_terms(auth)
    make_user("other@example.com")
    make_user("unverified@example.com", verified=False)
    auth.logout()
    auth.admin()
    date = in_days(30)
    response = client.post("/admin/legal/terms", data=form(significant="yes", effective_at=date))
    assert response.status_code == 303
    page = client.get("/admin/legal/terms").get_data(as_text=True)
    assert f"it takes effect on {date}" in page
    notices.drain()  # the notice goes out in the background
    mailed = sorted(m["To"] for m in outbox(client.application))
    assert mailed == ["admin@example.com", "other@example.com", "person@example.com"]
    assert "Advance notice mailed to 3 of 3" in client.get("/admin/legal/terms").get_data(as_text=True)
    auth.logout()

    auth.login()  # the person who accepted v1
    keys = client.get("/keys/")
    assert keys.status_code == 200  # not asked before the date
    html = keys.get_data(as_text=True)
    assert f"New terms take effect on {date}" in html and 'href="/terms/v2"' in html
    terms = client.get("/terms").get_data(as_text=True)
    assert "Version v1" in terms and "<h1>Terms v1</h1>" in terms and 'href="/terms/v2"' in terms
    upcoming = client.get("/terms/v2").get_data(as_text=True)
    assert f"takes effect on {date}" in upcoming and "an earlier version" not in upcoming

    # The date arrives (everything moved back 31 days).
    with atomic():
        legal.find(LegalKind.TERMS, "v1").published_at -= timedelta(days=31)
        document = legal.find(LegalKind.TERMS, "v2")
        document.published_at -= timedelta(days=31)
        document.effective_at -= timedelta(days=30, seconds=1)
    response = client.get("/keys/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/consent")
    consent = client.get("/consent").get_data(as_text=True)
    assert "<h2>Terms v2</h2>" in consent and "took effect on" in consent  # under the page's own <h1>
    assert "New terms take effect" not in consent  # the banner is gone
    assert "<h1>Terms v2</h1>" in client.get("/terms").get_data(as_text=True)
    client.post("/consent", data={"decision": "accept"})
    assert client.get("/keys/").status_code == 200
    db.session.rollback()
    accepted = db.session.scalars(select(TermsAcceptance).where(TermsAcceptance.user_id == user.id)
                                  .order_by(TermsAcceptance.id)).all()
    assert [a.document.version for a in accepted] == ["v1", "v2"]


def test_the_notice_can_be_resumed_without_mailing_anyone_twice(client, auth):
    publish_terms("v1")
    admin = auth.admin()
    with atomic():
        legal.publish(LegalKind.TERMS, "v2", "# v2", significant=True,
                      effective_at=datetime.now(timezone.utc) + timedelta(days=30))
    # Publishing outside the console (as if the server stopped before mailing): nobody mailed yet.
    make_user("a@example.com")
    page = client.get("/admin/legal/terms/v2").get_data(as_text=True)
    assert "mailed to 0 of 2" in page and "Send the remaining notices" in page
    refused = client.post("/admin/legal/terms/v2/notify", data={})
    assert refused.status_code == 303 and audit_entries("legal.notify") == []
    response = client.post("/admin/legal/terms/v2/notify", data={"confirm": "yes"})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/legal/terms/v2"
    notices.drain()
    assert sorted(m["To"] for m in outbox(client.application)) == ["a@example.com", admin.email]
    client.post("/admin/legal/terms/v2/notify", data={"confirm": "yes"})
    notices.drain()
    assert len(outbox(client.application)) == 2
    assert "mailed to 2 of 2" in client.get("/admin/legal/terms/v2").get_data(as_text=True)
    assert [e.actor for e in audit_entries("legal.notify")] == [admin.email, admin.email]
    # A version in force at publication has no advance notice to send.
    client.post("/admin/legal/terms/v1/notify", data={"confirm": "yes"})
    assert "there is no advance notice to send" in client.get("/admin/legal/terms/v1").get_data(as_text=True)


def test_declines_and_acceptances_are_listed_per_version_with_links_to_the_people(client, auth):
    publish_terms("v1")
    user = user_who_accepted_the_terms(auth)
    publish_terms("v2", significant=True)
    client.post("/consent", data={"decision": "decline", "reason": "price <b>too</b> high"})
    auth.logout()
    auth.admin()
    # The admin has not accepted v2 either: their portal pages ask, the console stays open.
    assert client.get("/keys/").headers["Location"].startswith("/consent")
    declined = client.get("/admin/legal/terms/v2?list=declined").get_data(as_text=True)
    assert f'href="/admin/users/{user.id}">person@example.com</a>' in declined
    assert "price &lt;b&gt;too&lt;/b&gt; high" in declined and "Declined (1)" in declined
    accepted = client.get("/admin/legal/terms/v1").get_data(as_text=True)
    assert f'href="/admin/users/{user.id}">person@example.com</a>' in accepted and "Accepted (1)" in accepted
    assert "Nobody has accepted this version yet." in client.get("/admin/legal/terms/v2").get_data(as_text=True)


def test_the_acceptance_list_paginates(client, auth):
    publish_terms("v1")
    people = [make_user(f"p{i}@example.com") for i in range(3)]
    document_id = legal.current(LegalKind.TERMS).id
    with atomic():  # 51 acceptances (some people accepted twice): one more than a page
        for i in range(51):
            db.session.add(TermsAcceptance(user_id=people[i % 3].id, document_id=document_id, ip="127.0.0.1"))
    auth.admin()
    first = client.get("/admin/legal/terms/v1").get_data(as_text=True)
    assert first.count('href="/admin/users/') == 50 and 'href="/admin/legal/terms/v1?page=2"' in first
    second = client.get("/admin/legal/terms/v1?page=2").get_data(as_text=True)
    assert second.count('href="/admin/users/') == 1 and 'rel="prev"' in second


def test_the_refund_policy_is_published_without_asking_anyone(client, auth):
    publish_terms("t1")
    publish_terms("r1", kind=LegalKind.REFUND_POLICY)
    auth.admin()
    date = in_days(20)
    response = client.post("/admin/legal/refunds", data=form(version="r2", significant="yes", effective_at=date))
    assert response.status_code == 303
    assert versions(LegalKind.REFUND_POLICY) == ["r2", "r1"]
    notices.drain()
    [message] = outbox(client.application)
    assert "refund policy" in message["Subject"] and "accept" not in message.get_content()
    assert f"A new refund policy takes effect on {date}" in client.get("/pricing").get_data(as_text=True)
    page = client.get("/admin/legal/refunds/r2").get_data(as_text=True)
    assert "asks no one to accept it" in page
    assert db.session.scalar(select(func.count()).select_from(LegalDocument)) == 3
