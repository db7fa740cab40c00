"""Every console route refuses anyone but an admin with two-factor on.

The routes are found by walking the URL map, so a console page added later without the guard
fails here without anyone remembering to write its test.
"""
import pytest

from portal.database import atomic
from portal.extensions import db
from portal.models import User
from tests.factories import make_admin, make_user


def console_urls(app) -> list[tuple[str, str]]:
    """(method, url) for every route under /admin, its arguments filled with placeholders."""
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        values = {name: 1 if type(rule._converters[name]).__name__ in ("IdConverter", "IntegerConverter") else "x"
                  for name in rule.arguments}
        url = adapter.build(rule.endpoint, values)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, url))
    return found


def test_the_walk_finds_the_console(app):
    urls = console_urls(app)
    assert ("GET", "/admin/") in urls and ("GET", "/admin/audit") in urls
    # Whatever answers under /admin belongs to the console blueprint, and so has its guard.
    assert {rule.endpoint.split(".")[0] for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/admin")} == {"admin"}


def test_anonymous_visitors_are_sent_to_log_in(app, client):
    for method, url in console_urls(app):
        response = client.open(url, method=method)
        assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url)


def test_people_who_are_not_admins_get_403(app, client, auth):
    auth.user("someone@example.com")
    for method, url in console_urls(app):
        response = client.open(url, method=method)
        assert response.status_code == 403, (method, url, response.status_code)


def test_an_admin_without_two_factor_is_shown_how_to_turn_it_on(app, client, auth):
    make_admin("admin@example.com", two_factor=False)
    assert auth.login("admin@example.com").status_code == 302
    for method, url in console_urls(app):
        response = client.open(url, method=method)
        assert response.status_code == 403, (method, url, response.status_code)
    page = client.get("/admin/").get_data(as_text=True)
    assert "Turn on two-factor authentication" in page and "/account/2fa" in page


def test_an_admin_with_two_factor_gets_in(app, client, auth):
    auth.admin()
    response = client.get("/admin/")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    for method, url in console_urls(app):
        if method == "GET":
            assert client.get(url).status_code not in (401, 403), url


def test_losing_admin_rights_closes_the_console_at_once(app, client, auth):
    admin = auth.admin()
    assert client.get("/admin/").status_code == 200
    with atomic():
        db.session.get(User, admin.id).is_admin = False
    assert client.get("/admin/").status_code == 403


@pytest.mark.one_backend
def test_the_console_link_shows_for_admins_only(app, client, auth):
    make_user("plain@example.com")
    assert auth.login("plain@example.com").status_code == 302
    assert 'href="/admin/"' not in client.get("/account/").get_data(as_text=True)
    auth.logout()
    auth.admin()
    assert 'href="/admin/"' in client.get("/account/").get_data(as_text=True)
