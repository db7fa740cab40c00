"""Variants of issue 12 that its own tests do not try, walked from the URL map so a new route is covered:

1. post/redirect/get: a GET of every URL a form posts to answers (a page or a redirect to one, never
   405, never acting); successful forms redirect; a refused one leaves the browser on a URL a
   reload can GET;
2. an htmx request after the session ended: 204 + HX-Redirect to the login page, whatever
   HX-Current-URL says;
3. CSRF: the token in a header or a form field, from another session, missing;
4. the sign-up throttle: failed forms of every kind, X-Forwarded-For, IPv6 /64 neighbours;
5. the language: Accept-Language forms, the account's and the session's choices, the switcher;
6. money: headline amounts of debts, exact amounts in both languages.
"""
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select

from portal import apikeys, i18n
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, ModelPrice, RateCounter, User
from tests.factories import PASSWORD, make_user
from tests.web.helpers import publish_terms, register, something_on_every_console_page

# Blueprints whose callers are programs (SDKs, Stripe): their POST-only URLs keep 405 on GET.
MACHINES = ("proxy", "webhooks")


def table_rows() -> dict[str, int]:
    """How many rows each table holds: a request that acts shows up here. Not the rate-limit counters
    (when they live in the database): a refused form still counts against its throttle."""
    db.session.rollback()
    return {table.name: db.session.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables if table.name != RateCounter.__tablename__}


@pytest.fixture
def world(client, auth):
    """An admin (logged in, owning a key) and a customer with something on every console page;
    the value of each URL argument that names one of them."""
    admin = auth.admin()
    shown = something_on_every_console_page()
    person, model = shown["person"], shown["model"]
    with atomic():
        own_key = apikeys.issue(db.session.get(User, admin.id), "laptop")[0].id
        their_key = apikeys.issue(db.session.get(User, person.id), "phone")[0].id
    price_id = db.session.scalar(select(ModelPrice.id).where(ModelPrice.model_id == model.id))
    return {"admin": admin, "person": person, "own_key": own_key, "their_key": their_key, "values": {
        "user_id": person.id, "model_id": model.id, "upstream_id": model.upstream_id, "price_id": price_id,
        "request_id": shown["refund"], "message_id": shown["message"], "incident_id": shown["incident"],
        "kind": "terms", "version": "v1", "token": "not-a-token", "name": "logo"}}


def form_urls(app, world) -> list[tuple[str, str]]:
    """(endpoint, url) of every portal and console URL that takes a POST, with real arguments."""
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods or rule.endpoint.partition(".")[0] in MACHINES:
            continue
        values = {name: world["values"][name] for name in rule.arguments if name != "key_id"}
        if "key_id" in rule.arguments:
            values["key_id"] = world["their_key"] if rule.rule.startswith("/admin") else world["own_key"]
        found.append((rule.endpoint, adapter.build(rule.endpoint, values)))
    return sorted(found)


def get_rules(app) -> list:
    return [rule for rule in app.url_map.iter_rules()
            if "GET" in rule.methods and rule.endpoint.partition(".")[0] not in MACHINES + ("static",)
            and rule.endpoint not in ("static", "site_logo")]


def page_urls(app, world) -> list[str]:
    adapter = app.url_map.bind("localhost")
    urls = []
    for rule in get_rules(app):
        values = {name: world["values"][name] for name in rule.arguments
                  if name != "key_id" and name not in (rule.defaults or ())}
        if "key_id" in rule.arguments:
            values["key_id"] = world["own_key"]
        urls.append(adapter.build(rule.endpoint, values))
    return sorted(set(urls))


def test_the_walk_finds_the_forms(app, world):
    endpoints = {endpoint for endpoint, _ in form_urls(app, world)}
    assert {"keys.create", "keys.rename", "account.password", "billing.checkout", "codes.redeem", "refunds.file",
            "pages.contact", "auth.consent", "choose_language", "auth.logout", "admin.users_limits",
            "admin.models_price", "admin.site_incident_resolve"} <= endpoints
    assert "webhooks.stripe_webhook" not in endpoints


# --- 1. post/redirect/get --------------------------------------------------------------------------

def _lands(client, response) -> None:
    """A redirect answered to a GET goes somewhere on this site that answers."""
    location = response.headers.get("Location") or response.headers.get("HX-Redirect")
    assert location and location.startswith("/") and not location.startswith("//"), location
    assert client.get(location).status_code in (200, 302, 303), location


def test_a_get_of_every_form_url_answers_and_does_nothing(app, client, world):
    before = table_rows()
    for endpoint, url in form_urls(app, world):
        response = client.get(url)
        assert response.status_code in (200, 302, 303), (url, response.status_code)
        if response.status_code != 200:
            _lands(client, response)
        assert client.head(url).status_code in (200, 302, 303), url
    after = table_rows()
    changed = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    assert changed == {}, changed
    assert client.get("/admin/").status_code == 200  # still logged in: a GET of /logout logs no one out


def test_a_get_of_every_form_url_answers_a_visitor_too(app, client, world):
    client.post("/logout")
    for endpoint, url in form_urls(app, world):
        response = client.get(url)
        assert response.status_code in (200, 302, 303), (url, response.status_code)


@pytest.mark.parametrize("url, page", [
    ("/admin/users/{user}/limits", "/admin/users/{user}"),
    ("/admin/models/{model}/prices/{price}/withdraw", "/admin/models/{model}"),
    ("/admin/site/maintenance/off", "/admin/site"),
    ("/admin/announcements/send", "/admin/announcements"),
    ("/logout", "/"),
    ("/language", "/"),
])
def test_a_get_of_a_console_action_goes_to_the_page_it_sits_on(client, world, url, page):
    ids = {"user": world["person"].id, "model": world["values"]["model_id"], "price": world["values"]["price_id"]}
    response = client.get(url.format(**ids))
    assert response.status_code == 303 and response.headers["Location"] == page.format(**ids)
    htmx = client.get(url.format(**ids), headers={"HX-Request": "true"})
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"] == page.format(**ids)


def test_machines_still_get_405(client):
    assert client.get("/stripe/webhook").status_code == 405
    answer = client.get("/v1/chat/completions")
    assert answer.status_code == 405 and answer.is_json


def test_a_refused_console_form_leaves_a_reloadable_address(client, world):
    url = f"/admin/users/{world['person'].id}/limits"
    refused = client.post(url, data={"rpm": "lots", "reason": "variants"})
    assert refused.status_code == 422
    again = client.get(url)  # what a reload (after the browser's warning) or the address bar asks
    assert again.status_code == 303 and again.headers["Location"] == f"/admin/users/{world['person'].id}"
    assert client.get(again.headers["Location"]).status_code == 200


# --- 2. htmx after the session ended ---------------------------------------------------------------

def login_required_pages(app, client, world) -> list[str]:
    """Every page that sends a visitor to the login page (found by asking, logged out); not the second
    step of logging in, which sends a visitor who has not done the first back to it."""
    client.post("/logout")
    found = []
    for url in page_urls(app, world):
        if url == "/login/2fa":
            continue
        response = client.get(url)
        if response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login":
            found.append(url)
    return found


def _next_of(response) -> str:
    target = urlsplit(response.headers["HX-Redirect"])
    assert target.path == "/login" and not target.netloc, response.headers["HX-Redirect"]
    return parse_qs(target.query)["next"][0]


def test_htmx_without_a_session_is_sent_to_log_in_from_every_page(app, client, world):
    pages = login_required_pages(app, client, world)
    assert {"/dashboard/", "/keys/", "/account/", "/admin/", "/admin/users", "/billing/"} <= set(pages)
    for url in pages:
        path = urlsplit(url).path
        for current, expected in ((None, url), (f"http://localhost{path}?page=2", f"{path}?page=2"),
                                  ("https://evil.example/phish", url), ("//evil.example/x", url),
                                  ("javascript:alert(1)", url)):
            headers = {"HX-Request": "true", **({"HX-Current-URL": current} if current else {})}
            response = client.get(url, headers=headers)
            assert response.status_code == 204 and response.get_data() == b"", (url, current, response.status_code)
            assert _next_of(response) == expected, (url, current)


def test_htmx_posts_without_a_session_are_sent_to_log_in(app, client, world):
    client.post("/logout")
    public = {"auth.login", "auth.register", "auth.forgot", "auth.reset", "pages.contact", "choose_language",
              "auth.two_factor"}
    for endpoint, url in form_urls(app, world):
        if endpoint in public:
            continue
        response = client.post(url, data={"name": "x"}, headers={"HX-Request": "true",
                                                                 "HX-Current-URL": "http://localhost/keys/"})
        assert response.status_code == 204 and response.get_data() == b"", (url, response.status_code)
        assert _next_of(response) == "/keys/", url


def test_successful_sign_up_reset_request_and_decline_redirect(app, client):
    """A reload of the page a successful form leads to shows it again and sends nothing twice."""
    from tests.web.helpers import outbox
    publish_terms("v1")
    signed_up = client.post("/register", data={"email": "new@example.com", "password": "a long passphrase",
                                                "accept_terms": "y"})
    assert signed_up.status_code == 303 and signed_up.headers["Location"] == "/register"
    for _ in range(2):  # the page, then a reload of it
        page = client.get("/register")
        assert page.status_code == 200
    assert "Check your inbox" not in page.get_data(as_text=True)  # shown once: a reload shows the form
    assert "Check your inbox" in client.post("/register", data={"email": "two@example.com", "password": "a long "
                                             "passphrase", "accept_terms": "y"}, follow_redirects=True).get_data(
        as_text=True)
    make_user("person@example.com")
    asked = client.post("/forgot", data={"email": "person@example.com"})
    assert asked.status_code == 303 and asked.headers["Location"] == "/forgot"
    shown = client.get("/forgot").get_data(as_text=True)
    assert "If an account uses that address" in shown
    assert "If an account uses that address" not in client.get("/forgot").get_data(as_text=True)
    assert len([m for m in outbox(app) if m["To"] == "person@example.com"]) == 1


def test_declining_new_terms_redirects_and_a_reload_declines_nothing_more(client, auth):
    from portal.models import LegalDecline, RefundRequest
    publish_terms("v1")
    auth.user(credit=2_500_000)
    publish_terms("v2", significant=True)
    declined = client.post("/consent", data={"decision": "decline", "reason": "too expensive"})
    assert declined.status_code == 303 and declined.headers["Location"] == "/consent"
    page = client.get("/consent").get_data(as_text=True)
    assert "We received your refund request" in page and "$2.50" in page
    again = client.get("/consent")  # a reload: the terms again, nothing declined twice
    assert again.status_code == 200 and "We received your refund request" not in again.get_data(as_text=True)
    rows = table_rows()
    assert rows[RefundRequest.__tablename__] == 1 and rows[LegalDecline.__tablename__] == 1


# --- 3. CSRF ---------------------------------------------------------------------------------------

TOKEN = re.compile(r'name="(?:[\w-]+-)?csrf_token"(?: type="hidden")? value="([^"]+)"')
TYPED_PASSWORD = "typed secret passphrase 42"


def _marked(app, endpoint) -> bool:
    from portal.views.csrf import _marked as marked
    return marked(app.view_functions[endpoint])


def _form_data(token=None) -> dict:
    data = {"name": "kept name", "subject": "kept subject", "message": "kept message", "email": "kept@example.com",
            "password": TYPED_PASSWORD, "pw-current": TYPED_PASSWORD, "pw-new": TYPED_PASSWORD,
            "em-password": TYPED_PASSWORD, "close-password": TYPED_PASSWORD, "reason": "kept reason",
            "lang": "zh", "decision": "decline", "code": "123456", "amount": "5"}
    if token:
        data["csrf_token"] = token
    return data


@pytest.mark.parametrize("token", [None, "stale", "other-session"])
def test_a_form_without_a_good_token_does_nothing_anywhere(app, client, world, csrf_on, token):
    csrf_on()
    if token == "other-session":
        other = app.test_client()
        token = TOKEN.search(other.get("/login").get_data(as_text=True)).group(1)
    before = table_rows()
    for endpoint, url in form_urls(app, world):
        response = client.post(url, data=_form_data(token))
        html = response.get_data(as_text=True)
        assert response.status_code in (302, 303, 400), (url, response.status_code)
        if response.status_code == 400:
            assert TYPED_PASSWORD not in html, url  # a password is never written back into a page
            if _marked(app, endpoint):
                assert TOKEN.search(html), url  # the form again, with a fresh token
            else:
                assert "nothing was done" in html and "Back to the form" in html, url
        htmx = client.post(url, data=_form_data(token), headers={"HX-Request": "true"})
        assert htmx.status_code == 400 and htmx.mimetype == "text/plain", url
    assert table_rows() == before
    assert client.get("/admin/").status_code == 200  # still logged in, the language unchanged
    with client.session_transaction() as session:
        assert session.get("lang") is None


def test_the_token_may_come_in_the_header_or_the_form(app, client, auth, csrf_on):
    auth.user()
    csrf_on()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', client.get("/keys/").get_data(as_text=True)).group(1)
    assert client.post("/keys/", data={"name": "by header"}, headers={"X-CSRFToken": token}).status_code == 303
    assert client.post("/keys/", data={"name": "by form", "csrf_token": token}).status_code == 303
    assert client.post("/keys/", data={"name": "htmx", "csrf_token": token},
                       headers={"HX-Request": "true"}).status_code == 200
    db.session.rollback()
    assert sorted(db.session.scalars(select(ApiKey.name))) == ["by form", "by header", "htmx"]


def test_a_stale_contact_form_keeps_what_was_typed(client, csrf_on):
    csrf_on()
    response = client.post("/contact", data={"email": "kept@example.com", "subject": "Kept subject",
                                              "message": "Kept message", "csrf_token": "stale"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'value="kept@example.com"' in html and 'value="Kept subject"' in html and "Kept message</textarea>" in html
    assert TOKEN.search(html).group(1) != "stale"


def test_a_stale_password_form_keeps_nothing_secret(client, auth, csrf_on):
    auth.user()
    csrf_on()
    response = client.post("/account/password", data={"pw-current": PASSWORD, "pw-new": TYPED_PASSWORD,
                                                       "pw-csrf_token": "stale"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and TYPED_PASSWORD not in html and PASSWORD not in html
    assert TOKEN.search(html)


# --- 4. the sign-up throttle -----------------------------------------------------------------------

def _counted(key: str) -> int:
    from portal import ratelimit
    return ratelimit.counters().count(key)


def test_failed_sign_ups_of_every_kind_leave_the_budget_for_real_ones(app, client, csrf_on):
    from portal.views.auth import REGISTER_LIMIT_IP
    publish_terms("v1")
    failures = [{"email": "not an address", "password": "a long passphrase", "accept_terms": "y"},
                {"email": "short@example.com", "password": "short", "accept_terms": "y"},
                {"email": "terms@example.com", "password": "a long passphrase"},
                {"email": "", "password": ""}]
    for _ in range(REGISTER_LIMIT_IP):
        for data in failures:
            assert client.post("/register", data=data).status_code == 422
    csrf_on()
    for _ in range(3):  # no token: the form again (400), and counted as a failure
        assert client.post("/register", data={"email": "x@example.com", "password": "a long passphrase",
                                              "accept_terms": "y"}).status_code == 400
    assert _counted("register:127.0.0.1") == 0
    assert _counted("register-failed:127.0.0.1") == 4 * REGISTER_LIMIT_IP + 3
    app.config["WTF_CSRF_ENABLED"] = False
    assert register(client, "real@example.com").status_code == 200
    assert _counted("register:127.0.0.1") == 1


def test_a_taken_address_is_counted_as_a_sign_up_on_purpose(client):
    """Counted as a failure, the difference would tell a caller which addresses have accounts."""
    publish_terms("v1")
    make_user("taken@example.com")
    assert register(client, "taken@example.com").status_code == 200
    assert (_counted("register:127.0.0.1"), _counted("register-failed:127.0.0.1")) == (1, 0)


def test_x_forwarded_for_does_not_split_the_counter(client):
    """No trusted proxy here (waitress alone believes the headers, from the configured proxy): the
    headers are the caller's own words and count for nothing."""
    from portal.views.auth import REGISTER_LIMIT_IP
    publish_terms("v1")
    for i in range(REGISTER_LIMIT_IP):
        response = client.post("/register", data={"email": f"n{i}@example.com", "password": "a long passphrase",
                                                  "accept_terms": "y"},
                               headers={"X-Forwarded-For": f"203.0.113.{i}", "X-Real-IP": f"198.51.100.{i}",
                                        "Forwarded": f"for=192.0.2.{i}"})
        assert response.status_code == 303
    refused = client.post("/register", data={"email": "last@example.com", "password": "a long passphrase",
                                             "accept_terms": "y"}, headers={"X-Forwarded-For": "192.0.2.99"})
    assert refused.status_code == 429


def test_ipv6_sign_ups_are_counted_per_slash_64(app):
    """One IPv6 host is routinely given a whole /64: its addresses share one counter, so a machine
    cannot get billions of sign-up budgets; a neighbouring /64 has its own. IPv4-mapped addresses
    count as their IPv4 address."""
    publish_terms("v1")
    for address in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::2"):
        neighbour = app.test_client()
        neighbour.environ_base["REMOTE_ADDR"] = address
        assert register(neighbour, f"{address.replace(':', '-')}@example.com").status_code == 200
    assert _counted("register:2001:db8:1:2::/64") == 2
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "2001:db8:1:3::1"
    assert register(other, "other-net@example.com").status_code == 200
    assert _counted("register:2001:db8:1:3::/64") == 1
    mapped = app.test_client()
    mapped.environ_base["REMOTE_ADDR"] = "::ffff:203.0.113.9"
    assert register(mapped, "mapped@example.com").status_code == 200
    assert _counted("register:203.0.113.9") == 1


# --- 5. the language -------------------------------------------------------------------------------

def _lang(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.get_data(as_text=True)).group(1)


@pytest.mark.parametrize("header, lang", [
    ("zh-CN", "zh-Hans"), ("zh-Hans", "zh-Hans"), ("zh-Hans-CN", "zh-Hans"), ("zh-TW", "zh-Hans"), ("zh", "zh-Hans"),
    ("ZH-cn", "zh-Hans"), ("zh;q=0.1, en;q=0.9", "en"), ("en-US,en;q=0.9,zh-CN;q=0.8", "en"), ("fr, zh;q=0.5", "zh-Hans"),
    ("zh-CN;q=0", "en"), ("garbage", "en"), ("", "en"), ("*", "en"), (";;;,,q=x", "en"),
])
@pytest.mark.one_backend  # reading a header: no database can change it
def test_accept_language_variants(client, header, lang):
    assert _lang(client.get("/pricing", headers={"Accept-Language": header})) == lang


def test_the_account_s_choice_beats_the_header_and_the_session_s_beats_it_for_a_visitor(client, auth):
    client.post("/language", data={"lang": "zh", "next": "/"})
    assert _lang(client.get("/pricing", headers={"Accept-Language": "en"})) == "zh-Hans"  # the visitor's choice
    user = make_user()
    with atomic():
        db.session.get(User, user.id).locale = "en"
    auth.login()  # a fresh session: the account's English now
    assert _lang(client.get("/pricing", headers={"Accept-Language": "zh-CN"})) == "en"
    with client.session_transaction() as session:
        session["lang"] = "zh"  # even a session that says otherwise: the account wins
    assert _lang(client.get("/pricing", headers={"Accept-Language": "zh-CN"})) == "en"


@pytest.mark.parametrize("lang", ["fr", "", "zh-Hans", "EN", "zh\n", "x" * 500])
def test_an_unknown_language_is_ignored(client, auth, lang):
    user = auth.user()
    answer = client.post("/language", data={"lang": lang, "next": "/keys/"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/keys/"
    db.session.rollback()
    assert db.session.get(User, user.id).locale in (None, "en")
    with client.session_transaction() as session:
        assert session.get("lang") is None


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example", "/\\evil.example", "\\\\evil.example",
                                    "/%2F%2Fevil.example", "javascript:alert(1)", "", None])
@pytest.mark.one_backend  # input checks no database can change
def test_the_switcher_sends_an_off_site_next_home(client, target):
    data = {"lang": "zh", **({"next": target} if target is not None else {})}
    answer = client.post("/language", data=data)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def test_the_switcher_works_on_the_consent_page(client, auth):
    publish_terms("v1")
    auth.user()
    publish_terms("v2", significant=True)
    assert client.get("/consent").status_code == 200
    answer = client.post("/language", data={"lang": "zh", "next": "/consent"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/consent"
    assert _lang(client.get("/consent")) == "zh-Hans"


def test_the_api_ignores_the_session_s_choice(client, auth):
    auth.user()
    client.post("/language", data={"lang": "zh", "next": "/"})
    english = client.get("/v1/models", headers={"Authorization": "Bearer nope"}).get_json()
    chinese = client.get("/v1/models", headers={"Authorization": "Bearer nope", "Accept-Language": "zh-CN"}).get_json()
    assert english != chinese  # the API does speak Chinese, when asked by its own header
    assert english == client.get("/v1/models", headers={"Authorization": "Bearer nope",
                                                       "Accept-Language": "en"}).get_json()


# --- 6. money --------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang, micro, short, exact", [
    ("en", -1_239_000, "-$1.24", "-$1.239"), ("en", 1_239_000, "$1.23", "$1.239"), ("en", -1, "-$0.01", "-$0.000001"),
    ("en", -10_000, "-$0.01", "-$0.01"), ("en", 0, "$0.00", "$0.00"), ("en", 1_234_567, "$1.23", "$1.234567"),
    ("zh", -1_239_000, "-US$1.24", "-US$1.239"), ("zh", 1_234_567, "US$1.23", "US$1.234567"),
    ("zh", 1, "US$0.00", "US$0.000001"), ("en", 123_456_789_012_345_678, "$123,456,789,012.34", "$123,456,789,012.345678"),
])
@pytest.mark.one_backend  # formatting: no database can change it
def test_headline_amounts_never_show_less_debt_or_more_credit_than_there_is(app, lang, micro, short, exact):
    with app.test_request_context(), force_locale(lang):
        assert i18n.usd_cents(micro) == short and i18n.usd(micro) == exact
        assert str(i18n.balance(micro)) == f'<span class="money" title="{exact}">{short}</span>'
    shown = Decimal(short.replace("US", "").replace("$", "").replace(",", ""))
    assert shown <= Decimal(micro).scaleb(-6)  # never more than there is, never less owed


def test_a_debt_reads_in_full_on_the_dashboard_and_billing_page(client, auth):
    from portal import ledger
    user = auth.user(credit=1_000_000)
    with atomic():
        hold = ledger.hold(user.account.id, 1_000_000)
        ledger.settle(hold, 2_239_000)  # the call cost more than its hold: $1.239 owed
    for url in ("/dashboard/", "/billing/"):
        html = client.get(url).get_data(as_text=True)
        assert re.search(r'title="-\$1\.239"[^>]*>-\$1\.24<', html), url


def test_money_formats_use_no_floats():
    from pathlib import Path
    source = Path(i18n.__file__).read_text(encoding="utf-8")
    assert "float(" not in source and "round(" not in source


def test_turning_on_two_factor_redirects_and_shows_the_codes_once(client, auth):
    import pyotp
    auth.user()
    secret = client.get("/account/2fa").get_data(as_text=True).split('data-testid="totp-secret">')[1].split("<")[0]
    done = client.post("/account/2fa", data={"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 303 and done.headers["Location"] == "/account/2fa"
    with client.session_transaction() as session:
        kept = session["recovery_codes"]
    shown = client.get("/account/2fa")
    codes = shown.get_data(as_text=True).split('data-testid="recovery-codes">')[1].split("<")[0].split()
    assert shown.status_code == 200 and len(codes) == 10 and shown.headers["Cache-Control"] == "no-store"
    assert not any(code in kept for code in codes)  # in the cookie only as ciphertext
    again = client.get("/account/2fa")  # a reload: the account page, the codes gone
    assert again.status_code == 302 and again.headers["Location"] == "/account/"
