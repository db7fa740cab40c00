"""axe-core on every page of the registry (tests/e2e/pages.py): no "serious" or "critical" violation,
logged out and in, on a desktop (1280x800) and a phone (390x844), light and dark, English and Chinese.
And on the same page loads, at 390 px no page scrolls sideways (`document.documentElement.scrollWidth`
stays within the window), in both languages, logged out and in; a failure names the page and the
elements that stick out.

axe-core comes from npm (tests/clients/package.json, installed by `make clients`). It is handed to
the browser context as an init script (Playwright's `add_init_script`: the DevTools protocol's
Page.addScriptToEvaluateOnNewDocument), which the browser runs in each new document itself; a
page's Content-Security-Policy does not govern it, so the CSP stays as strict as in production for
the page under test (no `bypass_csp`, no script tag or inline script added), and
`test_axe_runs_under_the_pages_csp` proves an inline script is still refused where axe runs. (The
same works with `page.evaluate(source)` after each load; the init script is sent to the browser
once per context rather than once per page, and saves about a third of a second a page.)

The cost: a page is loaded once per language and checked at each screen size and colour scheme of
the plan by resizing the viewport and switching `prefers-color-scheme` in place (what the CSS sees is
the same as on a fresh load; app.js does not read the width). A run of axe costs about as much as
loading the page, whatever rules it runs, so the plan is pairwise rather than every combination:
  portal pages: English at desktop-light and phone-dark, Chinese at phone-light and desktop-dark:
                every size with every scheme, and each language at both sizes and in both schemes;
  console pages: English at desktop-light and phone-dark, Chinese at desktop-light.
After the plan's passes each page is measured at the phone's width (resized to it if the plan ended
elsewhere), so every page is measured in each language whatever the plan.
AXE_FULL=1 checks every page at all eight combinations (slower; for a release check).
"""
import os
from pathlib import Path

import pytest

from tests.e2e import pages
from tests.e2e.conftest import CHROMIUM

AXE = Path(__file__).resolve().parents[1] / "clients" / "node_modules" / "axe-core" / "axe.min.js"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make browser installs it)"),
    pytest.mark.skipif(not AXE.exists(), reason="axe-core is not installed: `make clients` installs it from npm "
                                                "(tests/clients/package.json; needs node and npm)"),
    pytest.mark.one_backend,  # the pages, not the database, are under test
]

SEVERE = ("serious", "critical")

# (size, scheme) per language, for the portal's pages and for the console's.
PLAN = {
    "portal": {"en": [("desktop", "light"), ("phone", "dark")], "zh": [("phone", "light"), ("desktop", "dark")]},
    "console": {"en": [("desktop", "light"), ("phone", "dark")], "zh": [("desktop", "light")]},
}
if os.environ.get("AXE_FULL"):
    EVERY = [(size, scheme) for size in pages.SIZES for scheme in ("light", "dark")]
    PLAN = {part: {"en": EVERY, "zh": EVERY} for part in PLAN}


# Elements whose right edge is past the window (the widest first): what to fix when a page is too wide.
WIDE = """() => [...document.querySelectorAll('body *')]
    .map(e => [e, e.getBoundingClientRect().right])
    .filter(([e, right]) => right > window.innerWidth + 0.5)
    .sort((a, b) => b[1] - a[1]).slice(0, 6)
    .map(([e, right]) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
         + (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\\s+/).join('.') : '')
         + ' (right edge ' + Math.round(right) + 'px)')"""


def axe_source() -> str:
    return AXE.read_text()


def with_axe(context):
    """The context, with axe-core in every page it opens from now on."""
    context.add_init_script(script=axe_source())
    return context


def run_axe(page) -> list[dict]:
    """axe's violations on the page as it is now (with axe-core's default rules: WCAG 2.x A and AA and
    best practices)."""
    return page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")


def severe(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in SEVERE]


def describe(where: str, violation: dict) -> str:
    targets = "; ".join(" > ".join(node["target"]) for node in violation["nodes"][:5])
    more = f" (+{len(violation['nodes']) - 5} more)" if len(violation["nodes"]) > 5 else ""
    first = violation["nodes"][0].get("failureSummary", "").replace("\n", " ")[:300]
    return f"{where}: {violation['id']} [{violation['impact']}] at {targets}{more}: {first}"


def too_wide(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth > window.innerWidth")


def sideways(page, where: str) -> list[str]:
    """The page, measured on a phone: how it sticks out, if it is wider than the window."""
    if page.viewport_size != pages.SIZES["phone"]:
        page.set_viewport_size(pages.SIZES["phone"])
    if not too_wide(page):
        return []
    width = page.evaluate("document.documentElement.scrollWidth")
    return [f"{where}: {width}px wide; sticking out: " + ", ".join(page.evaluate(WIDE))]


def check_pages(browser, site, entries, lang: str, plan) -> tuple[list[str], list[str]]:
    """Open each page once in `lang`, run axe at each (size, scheme) of `plan`, then measure it on a
    phone; the axe problems and the pages too wide, found."""
    problems, wide = [], []
    for who, group in pages.by_person(entries).items():
        first_size, first_scheme = plan[0]
        context = with_axe(pages.new_context(browser, first_size, first_scheme, lang))
        try:
            page = context.new_page()
            if who != "anon":
                pages.log_in(page, site.base, who, site.world)
            for entry in group:
                pages.visit(page, site.base, entry, site.world)
                for size, scheme in plan:
                    page.set_viewport_size(pages.SIZES[size])
                    page.emulate_media(color_scheme=scheme)
                    where = f"{entry.name} ({page.url}, {size}, {scheme}, {lang})"
                    problems += [describe(where, v) for v in severe(run_axe(page))]
                wide += sideways(page, f"{entry.name} ({page.url}, {lang})")
        finally:
            context.close()
        problems += [f"{who} ({lang}): {e}" for e in context.errors if "Content Security Policy" in e]
    return problems, wide


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("part", ["portal", "console"])
def test_no_serious_accessibility_violations_and_no_sideways_scroll_on_a_phone(site, browser, part, lang):
    entries = [p for p in pages.PAGES if p.console == (part == "console")]
    problems, wide = check_pages(browser, site, entries, lang, PLAN[part][lang])
    found = []
    if problems:
        found.append(f"{len(problems)} serious or critical axe violations:\n" + "\n".join(problems))
    if wide:
        found.append("pages wider than a 390-px phone:\n" + "\n".join(wide))
    assert not found, "\n\n".join(found)


def test_axe_runs_under_the_pages_csp(site, browser):
    context = with_axe(pages.new_context(browser, "desktop", "light", "en"))
    try:
        page = context.new_page()
        response = page.goto(site.base + "/")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert page.evaluate("axe.run(document).then(r => r.passes.length)") > 10  # axe did run here
        blocked = page.evaluate("""() => { const s = document.createElement('script');
            s.textContent = 'window.inlineRan = true'; document.head.append(s); return !window.inlineRan; }""")
        assert blocked, "an inline script ran: the CSP was not enforced while axe ran"
    finally:
        context.close()
    assert any("Content Security Policy" in e for e in context.errors)  # the refused inline script


def test_axe_finds_a_violation(site, browser):
    """The check can fail: a button without a name, and text without contrast, are reported."""
    context = with_axe(pages.new_context(browser, "desktop", "light", "en"))
    try:
        page = context.new_page()
        page.goto(site.base + "/")
        page.evaluate("""() => { const b = document.createElement('button'); document.querySelector('main').append(b);
            const p = document.createElement('p'); p.textContent = 'faint'; p.className = 'axe-faint';
            document.querySelector('main').append(p);
            document.styleSheets[0].insertRule('.axe-faint { color: #eee !important; }'); }""")
        found = {v["id"] for v in severe(run_axe(page))}
        assert {"button-name", "color-contrast"} <= found, found
    finally:
        context.close()


def test_the_check_sees_a_wide_page(site, browser):
    """The width check can fail: a page made wider than the phone is caught, and what sticks out named."""
    context = pages.new_context(browser, "phone", "light", "en")
    try:
        page = context.new_page()
        page.goto(site.base + "/")
        assert not sideways(page, "home")
        page.evaluate("""() => { const d = document.createElement('div'); d.className = 'too-wide';
            d.textContent = 'x'; document.querySelector('main').append(d);
            document.styleSheets[0].insertRule('.too-wide { width: 500px; }'); }""")
        [problem] = sideways(page, "home")
        assert "div.too-wide" in problem, problem
    finally:
        context.close()


def test_every_page_is_in_the_registry(app):
    """Every GET endpoint a browser can open is in the registry, or skipped with a reason."""
    world = pages.World()
    covered = {pages.endpoint_of(app, entry, world) for entry in pages.PAGES}
    missing = sorted(set(pages.page_endpoints(app)) - covered - set(pages.SKIPPED))
    assert not missing, (f"GET pages in neither tests/e2e/pages.py's PAGES nor its SKIPPED: {missing} "
                         f"(add an entry, so axe, the phone-width check and `make screenshots` see the page)")
    stale = sorted(set(pages.SKIPPED) - set(pages.page_endpoints(app)))
    assert not stale, f"SKIPPED names endpoints the app no longer has: {stale}"
    names = [entry.name for entry in pages.PAGES]
    assert len(names) == len(set(names)), "two registry entries share a name"
