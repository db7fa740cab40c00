"""Terms and privacy pages, publishing, and re-consent after a significant change."""
import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import ApiKey, LegalKind, RefundRequest, TermsAcceptance
from tests.factories import make_user
from tests.web.helpers import publish_terms


def test_terms_pages_with_versions(client):
    assert b"Nothing is published yet" in client.get("/terms").data
    publish_terms("2026-01")
    publish_terms("2026-06")
    page = client.get("/terms")
    assert b"Version 2026-06" in page.data and b"<h1>Terms 2026-06</h1>" in page.data
    old = client.get("/terms/2026-01")
    assert b"an earlier version" in old.data
    assert client.get("/terms/nope").status_code == 404
    publish_terms("p1", kind=LegalKind.PRIVACY)
    assert b"Version p1" in client.get("/privacy").data


def test_markdown_cannot_inject_html(client):
    from portal import legal
    from portal.database import atomic
    with atomic():
        legal.publish(LegalKind.TERMS, "x", "# Hi\n\n<script>alert(1)</script>")
    page = client.get("/terms").data
    assert b"<script>alert" not in page and b"&lt;script&gt;" in page


def test_significant_change_requires_consent(client, auth):
    publish_terms("v1")
    user = make_user()
    from portal import legal
    from portal.database import atomic
    with atomic():
        legal.accept(user, legal.current(LegalKind.TERMS), "127.0.0.1")
    auth.login()
    assert client.get("/dashboard/").status_code == 200
    publish_terms("v2")  # not significant: nothing asked
    assert client.get("/dashboard/").status_code == 200
    publish_terms("v3", significant=True)
    response = client.get("/keys/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/consent")
    htmx = client.get("/keys/", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"] == "/consent"
    assert client.get("/pricing").status_code == 200  # public pages stay open
    page = client.get("/consent")
    assert b"<h2>Terms v3</h2>" in page.data and page.data.count(b"<h1") == 1  # the document under the page's h1
    assert client.post("/consent?next=/keys/", data={"decision": "accept"}).headers["Location"] == "/keys/"
    assert client.get("/keys/").status_code == 200
    db.session.rollback()
    versions = [a.document.version for a in db.session.scalars(select(TermsAcceptance).order_by(TermsAcceptance.id))]
    assert versions == ["v1", "v3"]


def test_declining_requests_a_refund_and_stops_keys(client, auth):
    from portal import apikeys
    from portal.database import atomic
    user = make_user(credit=2_500_000)
    with atomic():
        apikeys.issue(user, "k")
    publish_terms("v9", significant=True)
    auth.login()
    response = client.post("/consent", data={"decision": "decline", "reason": "too expensive"},
                           follow_redirects=True)
    assert b"We received your refund request" in response.data and b"$2.50" in response.data
    db.session.rollback()
    refund = db.session.scalar(select(RefundRequest))
    assert (refund.balance_at_request, refund.reason) == (2_500_000, "too expensive")
    assert db.session.scalar(select(ApiKey.revoked_at)) is not None


def test_terms_publish_cli(app, cli, tmp_path):
    document = tmp_path / "terms.md"
    document.write_text("# New terms\n")
    out = cli("terms", "publish", str(document), "--version", "2027-01", "--significant")
    assert out.exit_code == 0 and "significant" in out.output
    again = cli("terms", "publish", str(document), "--version", "2027-01")
    assert again.exit_code == 1 and "already published" in again.output
    missing = cli("privacy", "publish", str(tmp_path / "nope.md"), "--version", "1")
    assert missing.exit_code == 1 and "cannot read" in missing.output
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    assert "the document is empty" in cli("privacy", "publish", str(empty), "--version", "1").output
    assert cli("privacy", "publish", str(document), "--version", "1").exit_code == 0


@pytest.mark.parametrize("link", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "java&#09;script:alert(1)",
                                  "data:text/html;base64,PHNjcmlwdD4=", " javascript:alert(1)"])
def test_legal_links_cannot_run_script(client, link):
    from portal import legal
    from portal.database import atomic
    with atomic():
        legal.publish(LegalKind.TERMS, "v1", f"[click]({link}), ![pic]({link}) and [help](https://example.com/help)")
    page = client.get("/terms").get_data(as_text=True)
    assert "script:" not in page.lower().replace("&#09;", "") and "data:text" not in page
    assert '<a href="#">click</a>' in page and '<a href="https://example.com/help">help</a>' in page
