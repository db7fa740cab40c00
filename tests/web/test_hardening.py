"""Small hardening items: odd input is 400/404 never 500, CSV formulas, no-store, HSTS, privacy re-consent."""
import csv
import io

import pyotp
import pytest
from sqlalchemy import select

from portal import apikeys, calls, catalog
from portal.database import atomic
from portal.errors import UnknownUpstream
from portal.extensions import db
from portal.models import ApiKey, ContactMessage, LegalKind, TermsAcceptance, User
from portal.pricing import Price, Usage
from portal.views.usage import csv_text
from tests.conftest import make_app
from tests.web.helpers import publish_terms, user_who_accepted_the_terms

HX = {"HX-Request": "true"}


def one_call(email: str, key_name: str, model_id: str = "model-a") -> str:
    """A finished call through the money path (hold -> settle -> record), without HTTP."""
    with atomic():
        user = db.session.scalar(select(User).where(User.email == email))
        try:
            catalog.find_upstream("echo")
        except UnknownUpstream:
            catalog.add_upstream("echo", "echo")
        catalog.set_model(model_id, "echo", Price(input=3_000_000, output=15_000_000))
        _, plaintext = apikeys.issue(user, key_name)
    call = calls.open_call(calls.new_request_id(), apikeys.authenticate(plaintext), catalog.serving_model(model_id),
                           Usage(input=2000, output=200), calls.Bounds(input=2000, output=200),
                           client_ip="198.51.100.7", route="messages", streamed=False)
    calls.close_call(call, calls.Outcome("ok", Usage(input=1000, output=100), False, 200, duration_ms=42))
    return call.request_id


# --- out-of-range numbers and ids: 404 (or the filter ignored), never a database error -----------

HUGE = "99999999999999999999"


@pytest.mark.parametrize("url, status", [
    (f"/usage/?page={HUGE}", 404),
    ("/usage/?page=" + "9" * 5000, 404),
    ("/usage/?page=100001", 404),
    ("/usage/?page=100000", 200),
    ("/usage/?page=0", 200),
    ("/usage/?page=-1", 200),
    ("/usage/?page=%C2%B2", 200),  # "²" is a digit to str.isdigit(), not to int()
    ("/usage/?page=1e3", 200),
    (f"/usage/?key={HUGE}", 200),
    (f"/usage/?model={HUGE}", 200),
    ("/usage/?key=2147483648&model=-1", 200),
    ("/usage/?key=%C2%B2", 200),
    ("/usage/?start=9999-12-31&end=9999-12-31", 200),
    ("/usage/?start=0001-01-01&end=0001-01-01", 200),
    ("/usage/?start=2024-02-30&end=nonsense", 200),
    ("/usage/export.csv?end=9999-12-31", 200),
    (f"/usage/export.csv?key={HUGE}&page={HUGE}", 200),
    ("/usage/" + "r" * 5000, 404),
    ("/usage/req_%ED%A0%80", 404),
    ("/usage/req_%0D%0Ax", 404),
    ("/usage/req_x%00", 400),
    (f"/keys/{HUGE}/rename", 404),
    (f"/keys/{HUGE}/limits", 404),
    (f"/keys/{HUGE}/revoke", 404),
    ("/keys/2147483648/rename", 404),
    ("/keys/2147483647/limits", 404),
    ("/keys/-1/revoke", 404),
    ("/terms/v1%00", 400),
    ("/privacy/" + "v" * 5000, 404),
])
@pytest.mark.one_backend  # input checks no database can change
def test_odd_numbers_and_ids_are_400_or_404_never_500(client, auth, url, status):
    auth.user()
    response = client.get(url)
    assert response.status_code == status, response.data[:300]
    if response.mimetype == "text/csv":
        assert response.get_data(as_text=True).startswith("time,request_id")


@pytest.mark.parametrize("action", ["rename", "limits", "revoke"])
def test_posting_to_a_huge_key_id_is_404(client, auth, action):
    auth.user()
    assert client.post(f"/keys/{HUGE}/{action}", data={"name": "x"}).status_code == 404


# --- text the database cannot hold: NUL and lone surrogates --------------------------------------

def test_nul_in_a_form_field_is_refused(client, auth):
    auth.user()
    assert client.post("/keys/", data={"name": "lap\x00top"}).status_code == 400
    assert client.post("/contact", data={"email": "a@example.com", "subject": "hi",
                                         "message": "hello\x00"}).status_code == 400
    assert client.post("/contact", data={"email": "a@example.com", "subject": "hi", "message": "x",
                                         "extra\x00": "1"}).status_code == 400
    assert client.get("/usage/?start=%00").status_code == 400
    db.session.rollback()
    assert db.session.scalar(select(ApiKey)) is None and db.session.scalar(select(ContactMessage)) is None


def test_invalid_utf8_in_a_form_is_stored_as_replacement_characters(client, auth):
    auth.user()
    # %ED%A0%80 is U+D800 (a lone surrogate) encoded as if it were a character: not UTF-8.
    response = client.post("/keys/", data="name=a%ED%A0%80b", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 303  # made; post/redirect/get shows it on the next GET
    sent = client.post("/contact", data="email=a%40example.com&subject=%ED%A0%80&message=%ED%B0%80%ED%A0%80",
                       content_type="application/x-www-form-urlencoded")
    assert sent.status_code == 302
    db.session.rollback()
    name = db.session.scalar(select(ApiKey.name))
    assert name.startswith("a") and name.endswith("b") and not any("\ud800" <= c <= "\udfff" for c in name)
    assert db.session.scalar(select(ContactMessage.subject))


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, '{"message": "\\ud800", "email": "\\udc00"}',
                                  '{"name": {"a": 1}}', "[1, 2]", "not json"])
def test_json_bodies_are_refused_by_the_portal(client, auth, body):
    """The portal takes forms; Flask-WTF would read a JSON body into them, and choke on these."""
    auth.user()
    for path in ("/contact", "/keys/", "/login", "/account/email", "/consent", "/keys/1/rename"):
        assert client.post(path, data=body, content_type="application/json").status_code == 400, path
    db.session.rollback()
    assert db.session.scalar(select(ApiKey)) is None and db.session.scalar(select(ContactMessage)) is None


# --- CSV export: cells a spreadsheet would run as formulas ----------------------------------------

@pytest.mark.parametrize("name", ['=HYPERLINK("https://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3",
                                  "@SUM(A1:A9)"])
def test_csv_export_neutralises_formula_cells(client, auth, name):
    auth.user(credit=50_000_000)
    one_call("person@example.com", name)
    rows = list(csv.DictReader(io.StringIO(client.get("/usage/export.csv").get_data(as_text=True), newline="")))
    assert rows[0]["key"] == "'" + name
    assert rows[0]["model"] == "model-a" and rows[0]["cost_micro_usd"] == "4500"  # numbers stay numbers


def test_csv_text_leaves_ordinary_text_alone():
    assert csv_text("laptop") == "laptop" and csv_text("") == "" and csv_text("a=b") == "a=b"
    assert csv_text("=1") == "'=1" and csv_text("-x") == "'-x"
    assert csv_text("\tx") == "'\tx" and csv_text("\rx") == "'\rx"  # key names are stripped; models are not


# --- pages that show a secret are never cached ----------------------------------------------------

def test_new_key_page_and_fragment_are_not_stored(client, auth):
    auth.user()
    assert "no-store" not in client.get("/keys/").headers.get("Cache-Control", "")
    for headers in ({}, HX):
        # A plain form redirects (post/redirect/get) and the GET shows the secret once; htmx gets it at once.
        response = client.post("/keys/", data={"name": "ci"}, headers=headers, follow_redirects=not headers)
        assert response.status_code == 200 and b'data-testid="new-key"' in response.data
        assert response.headers["Cache-Control"] == "no-store"


def test_totp_secret_and_recovery_codes_are_not_stored(client, auth):
    auth.user()
    setup = client.get("/account/2fa")
    assert setup.headers["Cache-Control"] == "no-store"
    secret = setup.get_data(as_text=True).split('data-testid="totp-secret">')[1].split("<")[0]
    wrong = client.post("/account/2fa", data={"code": "000000"})
    assert wrong.status_code == 422 and wrong.headers["Cache-Control"] == "no-store"
    done = client.post("/account/2fa", data={"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 303 and done.headers["Cache-Control"] == "no-store"  # post/redirect/get
    shown = client.get(done.headers["Location"])
    assert b'data-testid="recovery-codes"' in shown.data and shown.headers["Cache-Control"] == "no-store"


# --- production: HSTS ---------------------------------------------------------------------------

def test_production_responses_carry_hsts(database, tmp_path, client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers  # development
    app = make_app(database, tmp_path / "production", PORTAL_ENV="production", PUBLIC_URL="https://portal.example")
    with app.app_context():
        try:
            production = app.test_client()
            for path in ("/healthz", "/login", "/v1/models", "/nowhere"):
                response = production.get(path, base_url="https://portal.example")
                assert response.headers["Strict-Transport-Security"] == "max-age=63072000", path
        finally:
            app.extensions["tollgate.gateway"].close()
            db.session.remove()
            db.engine.dispose()


# --- a significant privacy policy asks for consent too ------------------------------------------

def accepted_versions() -> list[tuple[str, str]]:
    db.session.rollback()
    return [(a.document.kind, a.document.version)
            for a in db.session.scalars(select(TermsAcceptance).order_by(TermsAcceptance.id))]


def test_significant_privacy_policy_requires_consent(client, auth):
    publish_terms("t1")
    publish_terms("p1", kind=LegalKind.PRIVACY, significant=True)  # before the account: agreed at sign-up
    user_who_accepted_the_terms(auth)
    assert client.get("/keys/").status_code == 200
    publish_terms("p2", kind=LegalKind.PRIVACY)  # not significant: nothing asked
    assert client.get("/keys/").status_code == 200
    publish_terms("p3", kind=LegalKind.PRIVACY, significant=True)
    response = client.get("/keys/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/consent")
    page = client.get("/consent")
    assert b"Our privacy policy has changed" in page.data and b"Version p3" in page.data
    accepted = client.post("/consent?next=/keys/", data={"decision": "accept"})
    assert accepted.headers["Location"] == "/keys/"
    assert client.get("/keys/").status_code == 200
    assert accepted_versions() == [("terms", "t1"), ("privacy", "p3")]


def test_new_terms_and_privacy_policy_are_accepted_one_after_the_other(client, auth):
    publish_terms("t1")
    user_who_accepted_the_terms(auth)
    publish_terms("t2", significant=True)
    publish_terms("p1", kind=LegalKind.PRIVACY, significant=True)
    assert b"Our terms have changed" in client.get("/consent").data
    assert client.post("/consent?next=/keys/", data={"decision": "accept"}).headers["Location"] == "/keys/"
    assert client.get("/keys/").headers["Location"].startswith("/consent")
    assert b"Our privacy policy has changed" in client.get("/consent").data
    client.post("/consent", data={"decision": "accept"})
    assert client.get("/keys/").status_code == 200
    assert accepted_versions() == [("terms", "t1"), ("terms", "t2"), ("privacy", "p1")]
