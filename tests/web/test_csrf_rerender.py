"""A form sent with a stale or missing CSRF token: shown again with the input kept and a fresh token,
or a page with a way back; htmx gets a short 400; and nothing is ever done (portal/views/csrf.py)."""
import re

from sqlalchemy import func, select

from portal import apikeys, users
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, User
from tests.factories import PASSWORD, make_user
from tests.web.helpers import publish_terms

TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
EXPIRED = "This form was open too long and has expired. Check it and send it again."


def keys_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(ApiKey))


def own_key(user) -> int:
    with atomic():
        key, _ = apikeys.issue(db.session.get(User, user.id), "laptop")
    return key.id


def test_a_stale_limits_form_comes_back_with_the_input_and_a_fresh_token(client, auth, csrf_on):
    key_id = own_key(auth.user())
    csrf_on()
    client.get(f"/keys/{key_id}/limits")  # the page: a session with its token
    stale = client.post(f"/keys/{key_id}/limits", data={"csrf_token": "stale", "spend_cap_total": "7",
                                                         "ip_allowlist": "10.0.0.0/8"})
    html = stale.get_data(as_text=True)
    assert stale.status_code == 400 and EXPIRED in html and 'id="error-summary"' in html
    assert 'value="7"' in html and "10.0.0.0/8</textarea>" in html  # what was typed is kept
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).spend_cap_total is None  # nothing was done
    [fresh] = TOKEN.findall(html)
    assert fresh != "stale"
    sent = client.post(f"/keys/{key_id}/limits", data={"csrf_token": fresh, "spend_cap_total": "7",
                                                       "ip_allowlist": "10.0.0.0/8"})
    assert sent.status_code == 303  # the fresh token works
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).spend_cap_total == 7_000_000


def test_a_create_without_a_token_makes_no_key(client, auth, csrf_on):
    auth.user()
    csrf_on()
    response = client.post("/keys/", data={"name": "laptop"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and EXPIRED in html and 'value="laptop"' in html
    assert keys_count() == 0


def test_a_valid_token_that_csrfprotect_refused_still_does_nothing(app, client, auth, csrf_on):
    """CSRFProtect also refuses an HTTPS post without a same-site Referer, whatever the token: the view
    runs again for the form, and must not act on the token it was sent (a prefixed form's too)."""
    user = auth.user()
    csrf_on()
    page = client.get("/keys/", base_url="https://localhost").get_data(as_text=True)
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    refused = client.post("/keys/", data={"name": "laptop", "csrf_token": token}, base_url="https://localhost")
    assert refused.status_code == 400 and EXPIRED in refused.get_data(as_text=True)
    assert keys_count() == 0
    changed = client.post("/account/password", base_url="https://localhost", data={
        "pw-csrf_token": token, "pw-current": PASSWORD, "pw-new": "a brand new passphrase"})
    assert changed.status_code == 400
    # The same with the Referer: done (so the refusal above was the Referer's, not a bad token).
    ok = client.post("/keys/", data={"name": "laptop", "csrf_token": token}, base_url="https://localhost",
                     headers={"Referer": "https://localhost/keys/"})
    assert ok.status_code == 303 and keys_count() == 1
    db.session.rollback()
    assert users.check_password(db.session.get(User, user.id), PASSWORD)  # the password did not change


def test_htmx_gets_a_short_400(client, auth, csrf_on):
    auth.user()
    csrf_on()
    response = client.post("/keys/", data={"name": "laptop"}, headers={"HX-Request": "true"})
    assert response.status_code == 400 and response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "This form has expired. Reload the page and try again."
    assert keys_count() == 0


def test_a_plain_token_form_gets_a_way_back(client, auth, csrf_on):
    key_id = own_key(auth.user())
    csrf_on()
    response = client.post(f"/keys/{key_id}/rotate", headers={"Referer": "http://localhost/keys/?x=1"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "nothing was done" in html
    assert 'href="/keys/?x=1"' in html  # back to the page the form was on, for a fresh token
    elsewhere = client.post(f"/keys/{key_id}/rotate", headers={"Referer": "https://evil.example/keys/"})
    assert 'href="https://evil.example' not in elsewhere.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).revoked_at is None and keys_count() == 1


def test_login_form_comes_back_with_the_email(client, csrf_on):
    make_user()
    csrf_on()
    response = client.post("/login", data={"email": "person@example.com", "password": PASSWORD})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and EXPIRED in html and 'value="person@example.com"' in html
    assert client.get("/dashboard/").status_code == 302  # not logged in


def test_the_skipped_hooks_still_run_before_the_form_is_shown_again(client, auth, csrf_on):
    """A failed check skips the later before-request hooks; the form's second run does not: someone who
    must accept new terms is sent to them, as for any other request."""
    publish_terms("v1")
    auth.user()
    publish_terms("v2", significant=True)
    csrf_on()
    response = client.post("/keys/", data={"name": "laptop"})
    assert response.status_code == 302 and "/consent" in response.headers["Location"]
    assert keys_count() == 0


def test_a_skipped_hook_that_refuses_answers_with_its_error(client, csrf_on):
    """A later hook that aborts (text the database cannot hold: 400) is answered as that error, never a 500."""
    csrf_on()
    response = client.post("/login", data={"csrf_token": "stale", "email": "a\x00b@example.com", "password": "x"})
    assert response.status_code == 400


def test_chinese_wording(client, auth, csrf_on):
    auth.user()
    csrf_on()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', client.get("/keys/").get_data(as_text=True)).group(1)
    client.post("/language", data={"lang": "zh", "next": "/keys/", "csrf_token": token})
    response = client.post("/keys/", data={"name": "laptop"})
    assert response.status_code == 400 and "表单打开太久，已经过期" in response.get_data(as_text=True)
