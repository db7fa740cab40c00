"""In a real browser, on a desktop and a 390px phone, with JavaScript and without, in English and Chinese:
create a key (the secret shown once; a reload makes no second key and shows no secret), the keys page
never scrolls sideways, and a refused limits form puts its error summary first (focused, with JS)."""
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, User
from tests.e2e.conftest import CHROMIUM, fits, log_in_person, reload
from tests.factories import make_model, make_user

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")

EMAIL = "owner@example.com"
SCREENS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
WORDS = {"en": {"shown_once": "Copy it now: it is shown only this once.", "problems": "There are 2 problems"},
         "zh": {"shown_once": "请立即复制：它只显示这一次。", "problems": "有 2 个问题需要处理"}}


def keys() -> list[ApiKey]:
    db.session.rollback()
    return db.session.scalars(select(ApiKey)).all()


@pytest.fixture
def owner(app):
    make_model("echo-1")
    user = make_user(EMAIL, credit=5_000_000)
    return user.id


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
@pytest.mark.parametrize("screen", SCREENS, ids=list(SCREENS))
def test_create_a_key_then_reload_and_a_refused_limits_form(app, gateway, browser, owner, screen, javascript, lang):
    if lang == "zh":
        with atomic():
            db.session.get(User, owner).locale = "zh"
    context = browser.new_context(viewport=SCREENS[screen], java_script_enabled=javascript,
                                  locale="zh-CN" if lang == "zh" else "en-US")
    errors = []
    context.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page = context.new_page()
    log_in_person(page, gateway, EMAIL)
    page.goto(f"{gateway}/keys/")
    assert fits(page), "the empty keys page scrolls sideways"

    # Create: the secret is shown once, on /keys/ (htmx swaps it in; without JS, 303 then GET).
    page.locator("#name").fill("laptop")
    page.locator("form[action='/keys/'] button[type=submit]").click()
    secret = page.get_by_test_id("new-key")
    secret.wait_for()
    plaintext = secret.inner_text().strip()
    assert plaintext.startswith("tg_") and WORDS[lang]["shown_once"] in page.content()
    assert page.url == f"{gateway}/keys/"
    assert fits(page), "the page with the new key scrolls sideways"
    [key] = keys()
    assert key.name == "laptop"

    # A reload: the same one key, and no secret any more.
    reload(page)
    page.locator(f"#key-{key.id}").wait_for()
    assert plaintext not in page.content() and page.get_by_test_id("new-key").count() == 0
    assert len(keys()) == 1
    assert fits(page), "the keys table makes the page scroll sideways"
    revoke = page.locator(f"#key-{key.id} a.danger-link")
    assert revoke.get_attribute("aria-label").endswith("laptop")
    box = revoke.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= SCREENS[screen]["width"]

    # A refused limits form: every problem at once, the summary first, and focused when JS runs.
    page.locator(f"#key-{key.id} a[href$='/limits']").click()
    page.locator("#spend_cap_total").fill("abc")
    page.locator("#ip_allowlist").fill("nonsense")
    with page.expect_response(lambda r: r.request.method == "POST" and "/limits" in r.url) as answer:
        page.locator("main form button[type=submit]").click()
    assert answer.value.status == 422
    page.wait_for_load_state("load")
    summary = page.locator("#error-summary")
    assert WORDS[lang]["problems"] in summary.inner_text()
    assert summary.bounding_box()["y"] < page.locator("#spend_cap_total").bounding_box()["y"]
    if javascript:
        expect(summary).to_be_focused()  # static/js/app.js focuses it on load and after htmx swaps
    assert page.locator("#spend_cap_total").get_attribute("aria-invalid") == "true"
    summary.locator("a[href='#spend_cap_total']").click()
    if javascript:
        expect(page.locator("#spend_cap_total")).to_be_focused()
    assert fits(page)
    assert keys()[0].spend_cap_total is None
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors
