"""On a 390-px phone no page of the registry (tests/e2e/pages.py) scrolls sideways, in English and in
Chinese, logged out and in (the console included): `document.documentElement.scrollWidth` stays
within the window. A failure names the page and the elements that stick out."""
import pytest

from tests.e2e import pages
from tests.e2e.conftest import CHROMIUM

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make browser installs it)"),
    pytest.mark.one_backend,
]

# Elements whose right edge is past the window (the widest first): what to fix when a page is too wide.
WIDE = """() => [...document.querySelectorAll('body *')]
    .map(e => [e, e.getBoundingClientRect().right])
    .filter(([e, right]) => right > window.innerWidth + 0.5)
    .sort((a, b) => b[1] - a[1]).slice(0, 6)
    .map(([e, right]) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
         + (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\\s+/).join('.') : '')
         + ' (right edge ' + Math.round(right) + 'px)')"""


def too_wide(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth > window.innerWidth")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_no_page_scrolls_sideways_on_a_phone(site, browser, lang):
    problems = []
    for who, group in pages.by_person(pages.PAGES).items():
        context = pages.new_context(browser, "phone", "light", lang)
        try:
            page = context.new_page()
            if who != "anon":
                pages.log_in(page, site.base, who, site.world)
            for entry in group:
                pages.visit(page, site.base, entry, site.world)
                if too_wide(page):
                    width = page.evaluate("document.documentElement.scrollWidth")
                    problems.append(f"{entry.name} ({page.url}, {lang}): {width}px wide; sticking out: "
                                    + ", ".join(page.evaluate(WIDE)))
        finally:
            context.close()
    assert not problems, "pages wider than a 390-px phone:\n" + "\n".join(problems)


def test_the_check_sees_a_wide_page(site, browser):
    """The check can fail: a page made wider than the phone is caught."""
    context = pages.new_context(browser, "phone", "light", "en")
    try:
        page = context.new_page()
        page.goto(site.base + "/")
        assert not too_wide(page)
        page.evaluate("""() => { const d = document.createElement('div'); d.className = 'too-wide';
            d.textContent = 'x'; document.querySelector('main').append(d);
            document.styleSheets[0].insertRule('.too-wide { width: 500px; }'); }""")
        assert too_wide(page)
        assert any("div.too-wide" in e for e in page.evaluate(WIDE))
    finally:
        context.close()
