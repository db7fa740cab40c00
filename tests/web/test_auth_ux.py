"""Issue 12, sign-up and login: htmx after the session ends, the sign-up throttles, the login form
after verifying an address, errors listed at once, English and Chinese."""
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from portal import ratelimit
from portal.extensions import db
from portal.models import User
from portal.views.auth import REGISTER_FAILURE_LIMIT_IP, REGISTER_LIMIT_IP
from tests.factories import make_admin, make_user
from tests.web.helpers import last_link, outbox, path_of, publish_terms, register

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def users_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(db.func.count()).select_from(User))


def login_next(url: str) -> str:
    """The `next` of a link to the login page (which must be the login page)."""
    parts = urlsplit(url)
    assert parts.path == "/login" and not parts.netloc, url
    [target] = parse_qs(parts.query)["next"]
    return target


def summary(html: str) -> list[str]:
    """The error summary's entries, as (target, text)."""
    box = re.search(r'<div class="error-summary"[^>]*>(.*?)</div>', html, re.DOTALL)
    assert box, "no error summary on the page"
    return re.findall(r'<a href="#([^"]+)">([^<]+)</a>', box.group(1))


# --- 1. htmx after the session ended -----------------------------------------------------------

def test_an_htmx_request_without_a_session_sends_the_whole_browser_to_login(client):
    response = client.get("/usage/?page=2", headers={"HX-Request": "true",
                                                     "HX-Current-URL": "http://localhost/usage/?range=7d"})
    assert response.status_code == 204 and response.data == b""
    assert login_next(response.headers["HX-Redirect"]) == "/usage/?range=7d"
    assert "HX-Request" in response.headers["Vary"]
    page = client.get("/login?next=%2Fusage%2F%3Frange%3D7d")
    assert b"Please log in to see that page." in page.data


@pytest.mark.parametrize("current", ["https://evil.example/usage/", "", "javascript:alert(1)"])
def test_htmx_next_is_the_request_path_when_the_current_url_is_not_this_site(client, current):
    response = client.get("/usage/?page=2", headers={"HX-Request": "true", "HX-Current-URL": current})
    assert response.status_code == 204
    assert login_next(response.headers["HX-Redirect"]) == "/usage/?page=2"


def test_a_plain_request_without_a_session_still_gets_a_302_with_next(client):
    response = client.get("/usage/?range=7d")
    assert response.status_code == 302 and "HX-Redirect" not in response.headers
    assert response.headers["Location"] == "/login?next=%2Fusage%2F%3Frange%3D7d"


def test_an_ended_session_and_htmx_log_in_again_and_come_back(client, auth):
    make_user()
    auth.login()
    other = client.application.test_client()
    auth.login(client=other)
    client.post("/logout")  # this browser's session ends; the page it had open asks htmx for more
    response = client.get("/keys/", headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/keys/"})
    assert response.status_code == 204 and login_next(response.headers["HX-Redirect"]) == "/keys/"
    back = auth.login(query="next=%2Fkeys%2F")
    assert back.headers["Location"] == "/keys/"


def test_the_login_message_is_translated(client):
    client.get("/usage/", headers={"HX-Request": "true", **ZH})
    page = client.get("/login", headers=ZH).get_data(as_text=True)
    assert "请先登录再查看该页面。" in page and "Please log in" not in page


# --- 4. sign-up throttles ----------------------------------------------------------------------

def test_twelve_people_signing_up_from_one_address(app, client):
    publish_terms()
    statuses = [register(app.test_client(), f"person{i}@example.com").status_code for i in range(12)]
    assert statuses == [200] * REGISTER_LIMIT_IP + [429] * 2
    assert users_count() == REGISTER_LIMIT_IP
    refused = register(app.test_client(), "person12@example.com").get_data(as_text=True)
    assert "Too many sign-ups from your network. Try again in 60 minutes." in refused
    assert ("email", "Too many sign-ups from your network. Try again in 60 minutes.") in summary(refused)


FAILED_SIGN_UPS = [
    {"email": "a@b", "password": "a long passphrase", "accept_terms": "y"},  # passed the old form: counted
    {"email": "typo@example", "password": "a long passphrase", "accept_terms": "y"},
    {"email": "new@example.com", "password": "short", "accept_terms": "y"},
    {"email": "new@example.com", "password": "a long passphrase"},
    {"email": "", "password": ""},
]


def test_failed_sign_ups_do_not_stop_a_real_one(app, client):
    publish_terms()
    for i in range(20):
        assert client.post("/register", data=FAILED_SIGN_UPS[i % len(FAILED_SIGN_UPS)]).status_code == 422
    assert register(client, "new@example.com").status_code == 200
    assert users_count() == 1


def test_the_failure_limit_throttles_probing(app, client):
    publish_terms()
    for _ in range(REGISTER_FAILURE_LIMIT_IP):
        assert client.post("/register", data=FAILED_SIGN_UPS[0]).status_code == 422
    refused = register(client, "new@example.com")
    assert refused.status_code == 429 and b"Too many sign-ups from your network" in refused.data
    assert client.post("/register", data=FAILED_SIGN_UPS[0]).status_code == 429
    assert users_count() == 0
    assert register(app.test_client(), "new@example.com").status_code == 429  # the address, not the browser


def test_a_taken_address_counts_as_a_sign_up_not_as_a_failure(app, client):
    """Counted anywhere else, the counters would tell a caller which addresses have accounts."""
    publish_terms()
    make_user("taken@example.com")
    for i in range(REGISTER_LIMIT_IP - 1):
        assert register(client, f"new{i}@example.com").status_code == 200
    taken = register(client, "taken@example.com")
    assert taken.status_code == 200 and b"Check your inbox" in taken.data
    assert ratelimit.counters().count("register-failed:127.0.0.1") == 0
    assert register(client, "fresh@example.com").status_code == 429  # as if it had been a new account
    [warning] = [m for m in outbox(app) if m["To"] == "taken@example.com"]
    assert warning["Subject"] == "Someone tried to register with your address"


# --- 5. after verifying an address --------------------------------------------------------------

def test_after_verifying_the_login_form_has_the_address_and_focuses_the_password(app, client):
    publish_terms()
    register(client, "Ada@Example.com")
    response = client.get(path_of(last_link(app, "Ada@Example.com")))
    assert response.status_code == 302 and response.headers["Location"] == "/login"  # no address in a URL
    page = client.get("/login").get_data(as_text=True)
    email = re.search(r'<input[^>]*id="email"[^>]*>', page).group(0)
    password = re.search(r'<input[^>]*id="password"[^>]*>', page).group(0)
    assert 'value="Ada@Example.com"' in email and "autofocus" not in email
    assert "autofocus" in password
    assert client.post("/login", data={"email": "Ada@Example.com", "password": "a long passphrase"}).status_code == 302


def test_without_a_verification_the_login_form_is_empty(client):
    page = client.get("/login").get_data(as_text=True)
    assert "autofocus" not in re.search(r'<input[^>]*id="password"[^>]*>', page).group(0)
    assert not re.search(r'value="[^"]', re.search(r'<input[^>]*id="email"[^>]*>', page).group(0))


# --- 3. every error at once, in plain words -----------------------------------------------------

def test_registration_lists_every_error_at_once(client):
    publish_terms()
    response = client.post("/register", data={"email": "not-an-email", "password": "short"})
    assert response.status_code == 422
    assert summary(response.get_data(as_text=True)) == [
        ("email", "Enter an email address like name@example.com."),
        ("password", "Use at least 10 characters."),
        ("accept_terms", "Tick the box to accept the terms: you need to accept them to create an account."),
    ]


@pytest.mark.parametrize("path, data, expected", [
    ("/login", {}, [("email", "Enter your email address."), ("password", "Enter your password.")]),
    ("/login", {"email": "nobody@example.com", "password": "wrong password"},
     [("password", "Email or password is not correct.")]),
    ("/forgot", {}, [("email", "Enter your email address.")]),
])
def test_login_and_reset_forms_sum_up_their_errors(client, path, data, expected):
    response = client.post(path, data=data)
    assert response.status_code == 422 and summary(response.get_data(as_text=True)) == expected


def test_two_factor_step_sums_up_its_error(client, auth):
    admin = make_admin("admin@example.com")  # two-factor on
    assert auth.login(admin.email).headers["Location"] == "/login/2fa"
    response = client.post("/login/2fa", data={"code": ""})
    assert response.status_code == 422
    assert summary(response.get_data(as_text=True)) == [
        ("code", "Enter the 6-digit code your app shows, or a recovery code.")]


# --- 6. Chinese ---------------------------------------------------------------------------------

def test_sign_up_and_login_in_chinese(app, client):
    publish_terms()
    page = client.get("/register", headers=ZH).get_data(as_text=True)
    assert "创建账户" in page and "我接受服务条款" in page
    wrong = client.post("/register", data={"email": "x", "password": "short"}, headers=ZH).get_data(as_text=True)
    assert summary(wrong) == [("email", "请输入邮箱地址，例如 name@example.com。"), ("password", "至少需要 10 个字符。"),
                              ("accept_terms", "请勾选以接受条款：接受条款后才能创建账户。")]
    done = register(client, "new@example.com")
    assert "Check your inbox" in done.get_data(as_text=True)
    with client.session_transaction() as session:
        session["lang"] = "zh"
    verified = client.get(path_of(last_link(app, "new@example.com")), follow_redirects=True).get_data(as_text=True)
    assert "谢谢！new@example.com 已验证，现在可以创建 API 密钥了。" in verified and "登录" in verified
    failed = client.post("/login", data={"email": "new@example.com", "password": "wrong password"})
    assert "邮箱或密码不正确。" in failed.get_data(as_text=True)


def test_login_throttle_message_in_chinese(client, auth):
    make_user()
    for _ in range(5):
        auth.login(password="wrong password!")
    blocked = client.post("/login", data={"email": "person@example.com", "password": "x"}, headers=ZH)
    assert blocked.status_code == 429 and "失败次数过多，请 15 分钟后再试。" in blocked.get_data(as_text=True)
