"""Issue 12 in a real browser, at desktop size and at 390px, with and without JavaScript, in English
and Chinese: sign-up errors summed up, the login form after verifying, htmx after the session ends,
and the account page's forms (a reload never meets 405) and language choice."""
import re

import pytest

from portal import logins
from portal.database import atomic
from portal.extensions import db
from portal.models import User
from tests.e2e.conftest import CHROMIUM, log_in_person, reload
from tests.factories import PASSWORD, make_user
from tests.web.helpers import last_link, publish_terms

pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian's chromium is not installed (make test and .ci/run install it)"),
              pytest.mark.one_backend]  # what the browser sees does not depend on the database

SIZES = {"desktop": {"width": 1100, "height": 900}, "phone": {"width": 390, "height": 844}}
LOCALES = {"en": "en-US", "zh": "zh-CN"}
WORDS = {
    "en": {"sign_up": "Create account", "log_in": "Log in", "email": "Email", "password": "Password",
           "problems": "There are 3 problems", "terms": "Tick the box to accept the terms",
           "accept": "I accept the terms of service", "inbox": "Check your inbox",
           "please": "Please log in to see that page.", "current": "Current password", "new": "New password",
           "change": "Change password", "wrong": "Your current password is not correct.",
           "save_language": "Save language"},
    "zh": {"sign_up": "创建账户", "log_in": "登录", "email": "邮箱", "password": "密码",
           "problems": "3", "terms": "请勾选以接受条款", "accept": "我接受服务条款", "inbox": "请查收邮件",
           "please": "请先登录再查看该页面。", "current": "当前密码", "new": "新密码", "change": "修改密码",
           "wrong": "当前密码不正确。", "save_language": "保存语言设置"},
}


def browser_page(browser, size, lang, javascript=True):
    context = browser.new_context(viewport=SIZES[size], locale=LOCALES[lang], java_script_enabled=javascript)
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return context, page, errors


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_sign_up_verify_log_in_and_an_ended_session_under_htmx(app, gateway, browser, size, lang):
    words = WORDS[lang]
    publish_terms("v1")
    context, page, errors = browser_page(browser, size, lang)
    try:
        page.goto(f"{gateway}/register")
        page.get_by_role("button", name=words["sign_up"]).click()
        summary = page.locator("#error-summary")
        summary.wait_for()
        assert words["problems"] in summary.inner_text() and words["terms"] in summary.inner_text()
        assert page.locator("html").evaluate("html => html.scrollWidth") <= SIZES[size]["width"]
        page.locator("#email").fill("newcomer@example.com")
        page.locator("#password").fill("correct horse battery")
        page.locator("#accept_terms").check()
        page.get_by_role("button", name=words["sign_up"]).click()
        page.get_by_role("heading", name=words["inbox"]).wait_for()

        # The link from the mail: the login form has the address, and the cursor in the password.
        page.goto(last_link(app, "newcomer@example.com").replace("http://localhost", gateway))
        assert page.url == f"{gateway}/login"
        assert page.locator("#email").input_value() == "newcomer@example.com"
        assert page.evaluate("document.activeElement.id") == "password"
        page.keyboard.type("correct horse battery")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{gateway}/dashboard/")

        # The session ends while the usage page is open; its next htmx request goes to the login page
        # as a whole page (not inside #results), and logging in comes back to the usage page.
        page.goto(f"{gateway}/usage/")
        with atomic():
            logins.end_all(db.session.scalar(db.select(User).where(User.email == "newcomer@example.com")))
        page.locator("input[name=start]").fill("2024-01-01")  # a change: htmx asks for #results
        page.wait_for_url(re.compile(r"/login\?next="))
        assert page.locator("#results").count() == 0
        assert words["please"] in page.content()
        page.locator("#email").fill("newcomer@example.com")
        page.locator("#password").fill("correct horse battery")
        page.get_by_role("button", name=words["log_in"], exact=True).click()
        page.wait_for_url(re.compile(r"/usage/"))
        assert page.locator("#results").count() == 1
    finally:
        context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_account_forms_without_javascript(app, gateway, browser, size, lang):
    words = WORDS[lang]
    publish_terms("v1")
    make_user()
    context, page, _ = browser_page(browser, size, lang, javascript=False)
    try:
        log_in_person(page, gateway)
        page.goto(f"{gateway}/account/")

        # A wrong password: the errors at the top of the page, at the URL the form was posted to.
        page.locator("#pw-current").fill("not my password")
        page.locator("#pw-new").fill("a brand new passphrase")
        page.get_by_role("button", name=words["change"]).click()
        summary = page.locator("#error-summary")
        assert words["wrong"] in summary.inner_text()
        assert page.url == f"{gateway}/account/password"
        # Asking for that URL again (the address bar, a bookmark, the back button) is no 405.
        response = page.goto(page.url)
        assert response.status != 405 and page.url == f"{gateway}/account/#password"

        # A success ends on the account page: asking again repeats nothing.
        page.locator("#pw-current").fill(PASSWORD)
        page.locator("#pw-new").fill("a brand new passphrase")
        page.get_by_role("button", name=words["change"]).click()
        assert page.url == f"{gateway}/account/"
        reload(page)
        assert page.url == f"{gateway}/account/" and page.locator("#error-summary").count() == 0

        # The language, chosen on the account page.
        other = "en" if lang == "zh" else "zh"
        page.locator("#account-language").select_option(other)
        page.get_by_role("button", name=words["save_language"]).click()
        assert page.url == f"{gateway}/account/#language"
        # The page in the other language (waited for: the click does not wait for the new page to load).
        page.get_by_role("button", name=WORDS[other]["change"]).wait_for()
        assert page.get_by_role("button", name=WORDS[other]["change"]).count() == 1
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_login_after_verifying_without_javascript(app, gateway, browser, lang):
    """autofocus is HTML: the password has the focus with scripts off too."""
    publish_terms("v1")
    context, page, _ = browser_page(browser, "phone", lang, javascript=False)
    try:
        page.goto(f"{gateway}/register")
        page.locator("#email").fill("quiet@example.com")
        page.locator("#password").fill("correct horse battery")
        page.locator("#accept_terms").check()
        page.get_by_role("button", name=WORDS[lang]["sign_up"]).click()
        page.wait_for_load_state("load")  # a navigation straight after a commit can miss the page (see reload)
        page.goto(last_link(app, "quiet@example.com").replace("http://localhost", gateway))
        assert page.url == f"{gateway}/login"
        assert page.locator("#email").input_value() == "quiet@example.com"
        assert page.locator("#password").get_attribute("autofocus") is not None
        page.keyboard.type("correct horse battery")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{gateway}/dashboard/")
    finally:
        context.close()
