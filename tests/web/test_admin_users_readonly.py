"""A suspended person logs in to a read-only portal: they read, export, write to the operator
and log out; every other change is refused with the reason and the way to appeal.

The refused routes are found by walking the URL map, so a form added later is covered without
anyone remembering to write its test."""
import pytest
from sqlalchemy import func, select

from portal import users
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, ContactMessage, User
from portal.views import readonly
from tests.factories import make_admin, make_user

SKIPPED_BLUEPRINTS = ("proxy", "webhooks")


def changing_routes(app) -> list[tuple[str, str, str]]:
    """(method, url, endpoint) for every portal route that can change something."""
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.split(".")[0] in SKIPPED_BLUEPRINTS:
            continue
        methods = sorted(rule.methods - {"HEAD", "OPTIONS", "GET"})
        if "GET" in rule.methods and rule.endpoint in readonly.ACTING_GETS:
            methods.append("GET")
        if not methods:
            continue
        values = {name: 1 if type(rule._converters[name]).__name__ in ("IdConverter", "IntegerConverter") else "x"
                  for name in rule.arguments if name in rule._converters}
        url = adapter.build(rule.endpoint, values)
        found.extend((method, url, rule.endpoint) for method in methods)
    return found


def suspend(email, reason="card testing"):
    with atomic():
        users.suspend(users.find_user(email), reason)


@pytest.fixture
def suspended(client, auth):
    user = make_user("sam@example.com", credit=2_000_000)
    suspend("sam@example.com")
    assert auth.login("sam@example.com").status_code == 302, "a suspended person may log in"
    return user


def test_the_walk_finds_the_forms(app):
    endpoints = {endpoint for _, _, endpoint in changing_routes(app)}
    assert {"keys.create", "billing.checkout", "account.password", "pages.contact", "auth.logout"} <= endpoints


# Choosing a language is allowed on purpose (portal/i18n.py): a suspended person should read the
# explanation and the appeal form in their language. It changes the account's `locale` and nothing
# else, which test_choosing_a_language_changes_only_the_language checks.
LANGUAGE_SWITCH = "choose_language"


def test_every_change_is_refused_with_the_reason_and_the_way_to_appeal(app, client, suspended):
    walked = 0
    for method, url, endpoint in changing_routes(app):
        if endpoint in readonly.ALLOWED or endpoint == LANGUAGE_SWITCH:
            continue
        response = client.open(url, method=method, data={"name": "x"})
        page = response.get_data(as_text=True)
        assert response.status_code == 403, (method, url, response.status_code)
        assert "Your account is suspended" in page and "card testing" in page and "/contact" in page, url
        walked += 1
    assert walked > 10
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 0
    # Still logged in and still suspended: nothing above changed the account.
    assert client.get("/account/").status_code == 200


def test_choosing_a_language_changes_only_the_language(app, client, suspended):
    assert LANGUAGE_SWITCH in {endpoint for _, _, endpoint in changing_routes(app)}

    def row():
        db.session.rollback()  # a fresh transaction: see what the requests committed
        user = db.session.get(User, suspended.id)
        return ({column.key: getattr(user, column.key) for column in User.__table__.columns},
                user.account.balance, db.session.scalar(select(func.count()).select_from(ApiKey)))

    before = row()
    response = client.post("/language", data={"lang": "zh", "next": "/account/", "name": "x"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/account/")
    after = row()
    assert before[0]["locale"] != "zh" and after[0]["locale"] == "zh"
    assert {name for name in before[0] if before[0][name] != after[0][name]} == {"locale"}
    assert after[0]["status"] == "suspended" and after[1:] == before[1:]
    page = client.get("/account/")
    assert page.status_code == 200 and 'data-testid="suspended-banner"' in page.get_data(as_text=True)


def test_htmx_requests_are_sent_to_the_explanation(client, suspended):
    response = client.post("/keys/", data={"name": "x"}, headers={"HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/account/suspended"
    page = client.get("/account/suspended").get_data(as_text=True)
    assert "Your account is suspended" in page and "card testing" in page


@pytest.mark.parametrize("url", ["/dashboard/", "/statement/", "/usage/", "/account/", "/billing/", "/keys/",
                                 "/pricing", "/contact", "/statement/statement.csv"])
def test_reading_works_and_every_page_has_the_banner(client, suspended, url):
    response = client.get(url)
    assert response.status_code == 200, url
    if response.mimetype == "text/html":
        page = response.get_data(as_text=True)
        assert 'data-testid="suspended-banner"' in page and "card testing" in page


def test_writing_to_the_operator_and_logging_out_still_work(client, suspended):
    response = client.post("/contact", data={"email": "sam@example.com", "subject": "Appeal",
                                             "message": "I was not card testing; I run a shop."})
    assert response.status_code == 302
    db.session.rollback()
    assert db.session.scalar(select(ContactMessage.subject)) == "Appeal"
    assert client.get("/account/export.json").status_code == 200
    assert client.post("/logout").status_code == 302
    assert client.get("/dashboard/").status_code == 302


def test_an_active_person_is_not_affected(client, auth):
    auth.user("ann@example.com")
    page = client.get("/dashboard/").get_data(as_text=True)
    assert "suspended-banner" not in page
    assert client.get("/account/suspended").status_code == 302
    assert client.post("/keys/", data={"name": "x"}).status_code == 303  # post/redirect/get: made, then shown
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 1


def test_a_suspended_admin_is_kept_out_of_the_console(client, auth):
    admin = auth.admin("boss@example.com")
    with atomic():
        users.suspend(db.session.get(User, admin.id), "compromised")
    auth.admin_login(admin)
    response = client.get("/admin/")
    assert response.status_code == 403 and "compromised" in response.get_data(as_text=True)


def test_a_terminated_person_cannot_log_in(client, auth):
    make_user("tom@example.com")
    with atomic():
        users.terminate(users.find_user("tom@example.com"), "fraud")
    assert auth.login("tom@example.com").status_code == 422
    assert client.get("/dashboard/").status_code == 302


def test_a_suspended_admin_with_two_factor_still_logs_in_through_both_steps(client, auth):
    admin = make_admin("two@example.com")
    suspend("two@example.com", "holiday")
    auth.admin_login(admin)
    assert "holiday" in client.get("/dashboard/").get_data(as_text=True)
