"""The quickstart's copy buttons and the models page's live search in a real browser, on a desktop and
on a phone (390 px), in English and in Chinese."""
import pytest

from portal import catalog
from portal.database import atomic
from portal.pricing import Price
from portal.views.pages import PLACEHOLDER_KEY
from tests.e2e.conftest import CHROMIUM, reload

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make browser)")

SCREENS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
WORDS = {"en": {"copy": "Copy", "search": "Search models", "heading": "Quickstart"},
         "zh": {"copy": "复制", "search": "搜索模型", "heading": "快速上手"}}


def _models():
    with atomic():
        catalog.add_upstream("openai", "openai", "https://api.openai.com/v1")
        catalog.add_upstream("anthropic", "anthropic", "https://api.anthropic.com")
        catalog.set_model("gpt-x", "openai", Price(input=1_000_000, output=2_000_000))
        catalog.set_model("claude-sonnet", "anthropic", Price(input=3_000_000, output=15_000_000))


@pytest.fixture(params=[(screen, lang) for screen in SCREENS for lang in WORDS], ids=lambda p: f"{p[0]}-{p[1]}")
def page(request, browser, gateway):
    screen, lang = request.param
    context = browser.new_context(viewport=SCREENS[screen], locale="zh-CN" if lang == "zh" else "en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway)
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.lang, page.width = lang, SCREENS[screen]["width"]
    yield page
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_quickstart_copy_button(app, gateway, page):
    from playwright.sync_api import expect

    _models()
    words = WORDS[page.lang]
    page.goto(f"{gateway}/quickstart")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["heading"])
    assert page.evaluate("document.documentElement.scrollWidth") <= page.width
    code = page.locator("#snippet-openai")
    button = page.locator('button[data-copy="snippet-openai"]')
    expect(button).to_have_text(words["copy"])
    button.click()
    expect(button).not_to_have_text(words["copy"])  # "Copied", in the page's language, for a moment
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == code.text_content().strip()
    assert PLACEHOLDER_KEY in copied and 'model="gpt-x"' in copied
    expect(button).to_have_text(words["copy"])  # and back


def test_models_live_search(app, gateway, page):
    from playwright.sync_api import expect

    _models()
    page.goto(f"{gateway}/models")
    rows = page.locator("tr[data-model]")
    expect(rows).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.width
    page.get_by_label(WORDS[page.lang]["search"]).fill("sonnet")
    expect(rows).to_have_count(1)  # filtered in place by htmx, no submit
    expect(rows.first).to_have_attribute("data-model", "claude-sonnet")
    assert "q=sonnet" in page.url  # the address says what is shown (a reload shows the same)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.width
    reload(page)
    expect(rows).to_have_count(1)
