"""The refund policy page: a built-in default until the operator publishes one, then versions like the terms."""
from portal import legal
from portal.database import atomic
from portal.models import LegalKind
from tests.web.helpers import publish_terms


def test_the_default_policy_says_what_is_refundable(client):
    page = client.get("/legal/refunds")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<title>Refund policy" in html and 'data-testid="default-refund-policy"' in html
    for promise in ("Paid top-ups you have not spent yet are refundable on request, to the payment method",
                    "Gifts, gift codes, sign-up credit and other grants are not refundable",
                    "Expired credit is not refundable", "Amounts under one cent stay on the account",
                    "How to ask", "Your API keys stop working as soon as you ask"):
        assert promise in html, promise
    assert client.get("/legal/refunds/v1").status_code == 404


def test_a_logged_in_person_gets_a_link_to_ask(client, auth):
    auth.user()
    assert 'href="/billing/refund/"' in client.get("/legal/refunds").get_data(as_text=True)


def test_published_versions_replace_the_default_and_are_listed(client):
    publish_terms("r1", kind=LegalKind.REFUND_POLICY)
    publish_terms("r2", kind=LegalKind.REFUND_POLICY, significant=True)
    html = client.get("/legal/refunds").get_data(as_text=True)
    assert "Version r2" in html and "<h1>Terms r2</h1>" in html
    assert "default-refund-policy" not in html
    assert 'href="/legal/refunds/r1"' in html and "significant change" in html
    old = client.get("/legal/refunds/r1").get_data(as_text=True)
    assert "<h1>Terms r1</h1>" in old and "an earlier version" in old
    assert client.get("/legal/refunds/nope").status_code == 404


def test_the_refund_policy_asks_no_consent(client, auth):
    publish_terms("t1")
    auth.user()
    with atomic():
        legal.publish(LegalKind.REFUND_POLICY, "r1", "# Refunds", significant=True)
    assert client.get("/keys/").status_code == 200
    assert legal.TITLES["refunds"] == "refund policy"
