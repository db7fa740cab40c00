"""Issue 12, the account page: post/redirect/get on every form, errors summed up at the top, the
language preference, English and Chinese."""
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import User
from tests.factories import PASSWORD
from tests.web.helpers import outbox

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def user_row() -> User:
    db.session.rollback()
    return db.session.scalar(select(User).order_by(User.id))


def summary(html: str) -> list[tuple[str, str]]:
    box = re.search(r'<div class="error-summary"[^>]*>(.*?)</div>', html, re.DOTALL)
    assert box, "no error summary on the page"
    return re.findall(r'<a href="#([^"]+)">([^<]+)</a>', box.group(1))


def post_only_account_urls(app):
    """Every account URL that takes a form (the export and confirmation links are GET only)."""
    return sorted(rule.rule for rule in app.url_map.iter_rules()
                  if rule.endpoint.startswith("account.") and "POST" in rule.methods and not rule.arguments)


def test_every_account_form_url_answers_a_reload(app, client, auth):
    """A reload, a bookmark or the back button asks for the URL a form was posted to: never a 405."""
    auth.user()
    urls = post_only_account_urls(app)
    assert {"/account/password", "/account/email", "/account/close", "/account/2fa/disable"} <= set(urls)
    for url in urls:
        response = client.get(url)
        assert response.status_code in (200, 303), (url, response.status_code)
        if response.status_code == 303:
            assert response.headers["Location"].startswith("/account/"), url
    assert user_row().status == "active"  # nothing was done


@pytest.mark.parametrize("url, section", [("/account/password", "password"), ("/account/email", "email"),
                                          ("/account/close", "close"), ("/account/2fa/disable", "two-factor")])
def test_a_get_goes_to_the_form_s_section(client, auth, url, section):
    auth.user()
    response = client.get(url)
    assert response.status_code == 303 and response.headers["Location"] == f"/account/#{section}"
    assert f'id="{section}"' in client.get(response.headers["Location"]).get_data(as_text=True)


def test_a_reload_after_a_successful_post_does_not_repeat_it(app, client, auth):
    auth.user()
    sent = client.post("/account/email", data={"em-email": "new@example.com", "em-password": PASSWORD})
    assert sent.status_code == 303 and sent.headers["Location"] == "/account/"
    assert len([m for m in outbox(app) if m["To"] == "new@example.com"]) == 1
    again = client.get("/account/email")  # what the address bar holds if the person goes back to it
    assert again.status_code == 303
    assert len([m for m in outbox(app) if m["To"] == "new@example.com"]) == 1


def test_password_form_lists_every_error_at_once(client, auth):
    auth.user()
    response = client.post("/account/password", data={"pw-current": "", "pw-new": "short"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert summary(page) == [("pw-current", "Enter your current password."), ("pw-new", "Use at least 10 characters.")]
    assert page.index('class="error-summary"') < page.index('id="password"')  # at the top of the page


@pytest.mark.parametrize("url, data, expected", [
    ("/account/email", {"em-email": "nope", "em-password": ""},
     [("em-email", "Enter an email address like name@example.com."),
      ("em-password", "Enter your password to confirm it is you.")]),
    ("/account/email", {"em-email": "new@example.com", "em-password": "not my password"},
     [("em-password", "Your password is not correct.")]),
    ("/account/close", {}, [("close-password", "Enter your password to confirm it is you.")]),
    ("/account/close", {"close-password": "not my password"}, [("close-password", "Your password is not correct.")]),
])
def test_account_forms_sum_up_their_errors(client, auth, url, data, expected):
    auth.user()
    response = client.post(url, data=data)
    assert response.status_code == 422 and summary(response.get_data(as_text=True)) == expected
    assert user_row().status == "active"


def test_a_refused_close_keeps_the_refund_box_ticked(client, auth):
    auth.user(credit=1_000_000)
    page = client.post("/account/close", data={"close-password": "wrong", "refund": "yes"}).get_data(as_text=True)
    assert re.search(r'<input type="checkbox" name="refund" value="yes" checked>', page)
    plain = client.get("/account/").get_data(as_text=True)
    assert re.search(r'<input type="checkbox" name="refund" value="yes">', plain)


def test_two_factor_setup_sums_up_its_error(client, auth):
    auth.user()
    response = client.post("/account/2fa", data={"code": ""})
    assert response.status_code == 422
    assert summary(response.get_data(as_text=True)) == [("code", "Enter the 6-digit code your app shows.")]


def test_language_is_chosen_on_the_account_page(client, auth):
    auth.user()
    page = client.get("/account/").get_data(as_text=True)
    form = re.search(r'<section class="card" id="language">.*?</section>', page, re.DOTALL).group(0)
    assert 'action="/language"' in form and '<option value="zh" lang="zh">简体中文</option>' in form
    assert '<option value="en" lang="en" selected>English</option>' in form
    chosen = client.post("/language", data={"lang": "zh", "next": "/account/#language"})
    assert chosen.status_code == 303 and chosen.headers["Location"] == "/account/#language"
    assert user_row().locale == "zh"
    page = client.get("/account/").get_data(as_text=True)
    assert "<h1>账户</h1>" in page and '<option value="zh" lang="zh" selected>简体中文</option>' in page


def test_account_page_in_chinese(client, auth):
    auth.user()
    client.post("/language", data={"lang": "zh", "next": "/account/"})
    page = client.get("/account/").get_data(as_text=True)
    for words in ("修改密码", "邮箱地址", "两步验证", "注销账户", "下载我的数据"):
        assert words in page, words
    wrong = client.post("/account/password", data={"pw-current": "wrong one!!", "pw-new": "a new passphrase"})
    assert summary(wrong.get_data(as_text=True)) == [("pw-current", "当前密码不正确。")]
    done = client.post("/account/password", data={"pw-current": PASSWORD, "pw-new": "a new passphrase"},
                       follow_redirects=True)
    assert "密码已修改，其他会话已退出登录。" in done.get_data(as_text=True)
