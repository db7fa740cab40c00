"""The keys pages for people: post/redirect/get with the secret shown once, every form error at once in
words that say what to type, an error summary linked to the fields, and a table that names each row's
actions (issue 12)."""
import re

from sqlalchemy import func, select

from portal import apikeys, catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, User
from portal.pricing import Price

HX = {"HX-Request": "true"}
SECRET = re.compile(r'data-testid="new-key">(tg_[A-Za-z0-9]+)<')


def keys_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(ApiKey))


def own_key(user, name="laptop") -> int:
    with atomic():
        key, _ = apikeys.issue(db.session.get(User, user.id), name)
    return key.id


def session_of(app, response) -> dict:
    cookie = response.headers["Set-Cookie"].split("session=", 1)[1].split(";", 1)[0]
    return app.session_interface.get_signing_serializer(app).loads(cookie)


def test_create_redirects_and_the_keys_page_shows_the_secret_once(app, client, auth):
    auth.user()
    created = client.post("/keys/", data={"name": "laptop"})
    assert created.status_code == 303 and created.headers["Location"] == "/keys/"
    first = client.get("/keys/")
    second = client.get("/keys/")  # a reload
    assert keys_count() == 1  # the reload made no second key
    [secret] = SECRET.findall(first.get_data(as_text=True))
    assert apikeys.hash_key(secret) == db.session.scalar(select(ApiKey.key_hash))
    assert "no-store" in first.headers["Cache-Control"]
    assert secret not in second.get_data(as_text=True) and not SECRET.search(second.get_data(as_text=True))
    # In the cookie between the two requests, the secret is ciphertext only.
    kept = session_of(app, created)
    assert secret not in str(kept) and secret[3:] not in str(kept) and kept.get("new_key")


def test_a_reload_after_an_htmx_create_makes_nothing(client, auth):
    auth.user()
    swapped = client.post("/keys/", data={"name": "ci"}, headers=HX)
    assert swapped.status_code == 200 and "no-store" in swapped.headers["Cache-Control"]
    [secret] = SECRET.findall(swapped.get_data(as_text=True))
    reload = client.get("/keys/").get_data(as_text=True)
    assert keys_count() == 1 and secret not in reload and "<html" in reload


def test_rotate_redirects_and_shows_the_new_secret_once(client, auth):
    key_id = own_key(auth.user())
    rotated = client.post(f"/keys/{key_id}/rotate")
    assert rotated.status_code == 303 and rotated.headers["Location"] == "/keys/"
    [secret] = SECRET.findall(client.get("/keys/").get_data(as_text=True))
    assert secret not in client.get("/keys/").get_data(as_text=True)
    assert keys_count() == 2 and db.session.get(ApiKey, key_id).revoked_at is not None
    # The rotation's address answers a GET (a reload or a typed address), never 405.
    again = client.get(f"/keys/{key_id}/rotate")
    assert again.status_code == 303 and again.headers["Location"] == "/keys/"
    refused = client.post(f"/keys/{key_id}/rotate")
    assert refused.status_code == 422 and "This key is revoked already" in refused.get_data(as_text=True)
    assert keys_count() == 2


def test_limits_errors_are_all_said_at_once_with_what_to_type(client, auth):
    key_id = own_key(auth.user())
    response = client.post(f"/keys/{key_id}/limits", data={
        "spend_cap_total": "abc", "spend_cap_monthly": "0", "expires_on": "31/01/2027",
        "ip_allowlist": "10.0.0.1\nnonsense", "max_concurrency": "two", "max_rpm": "0"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    expected = {
        "spend_cap_total": "Enter an amount in US dollars, like 5 or 12.50, or leave it empty for no cap.",
        "spend_cap_monthly": "enter an amount above zero, like 5 or 12.50, or leave it empty for no cap.",
        "expires_on": "Enter a date like 2027-01-31.",
        "ip_allowlist": "Not an IP address or network: nonsense. Enter IP addresses or networks like 203.0.113.7 or "
                        "10.0.0.0/24, one per line.",
        "max_concurrency": "Enter a whole number from 1 to",
        "max_rpm": "Enter a whole number from 1 to",
    }
    for name, message in expected.items():
        error = re.search(rf'<p class="error" id="{name}-error">([^<]*)</p>', html)
        assert error and message in error.group(1), name
        assert re.search(rf'<(input|textarea)[^>]*aria-invalid="true"[^>]*id="{name}"', html), name
        assert f'<li><a href="#{name}">' in html, name  # the summary links to the field
    assert "There are 6 problems" in html and 'id="error-summary"' in html and 'role="alert"' in html
    assert "must be a non-negative decimal number" not in html  # the old wording, for programmers
    # A hint and an error are both announced with the field.
    assert re.search(r'aria-describedby="spend_cap_total-hint spend_cap_total-error"', html)
    assert 'value="abc"' in html and "nonsense</textarea>" in html  # what was typed stays
    key = db.session.get(ApiKey, key_id)
    db.session.refresh(key)
    assert (key.spend_cap_total, key.ip_allowlist, key.max_concurrency, key.max_rpm) == (None, None, None, None)


def test_limits_form_takes_iso_dates_and_amounts(client, auth):
    key_id = own_key(auth.user())
    page = client.get(f"/keys/{key_id}/limits").get_data(as_text=True)
    assert re.search(r'<input[^>]*id="expires_on"[^>]*type="date"', page)
    saved = client.post(f"/keys/{key_id}/limits", data={"expires_on": "2099-01-31", "spend_cap_total": "12.50",
                                                         "ip_allowlist": "203.0.113.7, 10.0.0.0/24"})
    assert saved.status_code == 303
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    assert key.expires_at.date().isoformat() == "2099-01-31" and key.spend_cap_total == 12_500_000
    assert key.ip_allowlist == "203.0.113.7/32\n10.0.0.0/24"
    assert 'value="2099-01-31"' in client.get(f"/keys/{key_id}/limits").get_data(as_text=True)


def test_create_and_rename_say_what_to_type(client, auth):
    key_id = own_key(auth.user())
    long_name = "x" * (apikeys.MAX_NAME_LENGTH + 1)
    created = client.post("/keys/", data={"name": long_name})
    assert created.status_code == 422 and "Enter a name of at most 100 characters." in created.get_data(as_text=True)
    assert 'href="#name"' in created.get_data(as_text=True)
    empty = client.post(f"/keys/{key_id}/rename", data={"name": "  "})
    html = empty.get_data(as_text=True)
    assert empty.status_code == 422 and "Enter a name for the key, like laptop or CI." in html
    assert "There is a problem" in html
    assert client.get(f"/keys/{key_id}/rename").status_code == 200  # the page of a failed form reloads fine
    assert keys_count() == 1 and db.session.get(ApiKey, key_id).name == "laptop"


def test_the_keys_table_names_each_action_and_labels_each_value(client, auth):
    own_key(auth.user())
    html = client.get("/keys/").get_data(as_text=True)
    assert '<table class="cards keys">' in html and "<caption" in html
    for label in ("Name", "Key", "Created", "Last used", "Limits", "Status"):
        assert f'data-label="{label}"' in html
    for action in ("Rename laptop", "Limits for laptop", "Revoke laptop"):
        assert f'aria-label="{action}"' in html
    # Nothing of the table outside its scroll box (the old page had an "Actions" span there).
    wrap = html.split('<div class="table-wrap">', 1)[1]
    assert wrap.index("</table>") < wrap.index("</div>")


def test_the_keys_pages_in_chinese(app, client, auth):
    user = auth.user()
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("echo-1", "echo", Price(input=1, output=1))
    key_id = own_key(user)
    client.post("/language", data={"lang": "zh", "next": "/keys/"})
    page = client.get("/keys/").get_data(as_text=True)
    assert "创建密钥" in page and 'aria-label="吊销 laptop"' in page and 'data-label="密钥"' in page
    refused = client.post(f"/keys/{key_id}/limits", data={"spend_cap_total": "abc", "expires_on": "soon"})
    html = refused.get_data(as_text=True)
    assert "有 2 个问题需要处理" in html and "请输入美元金额" in html and "请输入日期" in html
    client.post("/keys/", data={"name": "ci"})
    assert "请立即复制" in client.get("/keys/").get_data(as_text=True)
