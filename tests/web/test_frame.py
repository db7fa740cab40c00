"""The page frame: static files (hashed names, long cache, gzip, the favicon), the language switcher
and the page's language, the error pages in Chinese, and the stylesheet's colour contrast."""
import gzip
import re
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from portal import static_files
from portal.extensions import db
from portal.models import User
from tests.conftest import make_app

ROOT = Path(__file__).resolve().parents[2]
HASHED = re.compile(r"^/static/(?P<name>[\w/.-]+)\.(?P<hash>[0-9a-f]{12})\.(?P<ext>\w+)$")
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def page_assets(html: str) -> list[str]:
    """The stylesheet and script URLs a page links."""
    return (re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
            + re.findall(r'<script src="([^"]+)"', html))


# --- static files ---------------------------------------------------------------------------------

def test_the_favicon_answers(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/x-icon"
    assert icon.data == (ROOT / "static/img/favicon.ico").read_bytes()
    assert 'rel="icon"' in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("path", ["/", "/login", "/pricing"])
def test_a_pages_assets_have_hashed_names_and_are_cached_for_a_year(client, path):
    urls = page_assets(client.get(path).get_data(as_text=True))
    assert len(urls) == 3, urls  # app.css, htmx, app.js
    for url in urls:
        found = HASHED.match(url)
        assert found, url
        source = (ROOT / "static" / f"{found['name']}.{found['ext']}").read_bytes()
        answer = client.get(url)
        assert answer.status_code == 200 and answer.data == source, url
        cache = answer.headers["Cache-Control"]
        assert "max-age=31536000" in cache and "immutable" in cache, (url, cache)
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "Content-Encoding" not in answer.headers  # the browser did not ask for gzip
        packed = client.get(url, headers={"Accept-Encoding": "gzip, deflate, br"})
        assert packed.headers["Content-Encoding"] == "gzip" and packed.headers["Vary"] == "Accept-Encoding"
        assert len(packed.data) < len(source) and gzip.decompress(packed.data) == source


def test_plain_names_keep_working_with_a_short_cache(client):
    answer = client.get("/static/css/app.css")
    assert answer.status_code == 200 and answer.data == (ROOT / "static/css/app.css").read_bytes()
    assert "immutable" not in answer.headers["Cache-Control"] and "max-age=300" in answer.headers["Cache-Control"]
    assert client.get("/static/css/nothing.css").status_code == 404


def test_changing_a_file_changes_its_url(tmp_path):
    static = tmp_path / "static"
    (static / "css").mkdir(parents=True)
    (static / "css" / "site.css").write_text("body { color: black; }\n")

    def served():
        app = Flask("frame", static_folder=str(static), instance_path=str(tmp_path / "instance"))
        static_files.init_app(app)
        with app.test_request_context():
            url = static_files.asset("css/site.css")
        return url, app.test_client().get(url, buffered=True)

    first, first_answer = served()
    (static / "css" / "site.css").write_text("body { color: navy; }\n")
    second, second_answer = served()
    assert HASHED.match(first) and HASHED.match(second) and first != second
    assert first_answer.data == b"body { color: black; }\n" and second_answer.data == b"body { color: navy; }\n"
    assert "immutable" in second_answer.headers["Cache-Control"]


def test_the_page_has_no_inline_style_or_script(client):
    """The CSP refuses both; the frame must not need them (htmx's settle is told not to copy styles)."""
    html = client.get("/").get_data(as_text=True)
    assert " style=" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert '"attributesToSettle": ["class", "width", "height"]' in html


# --- language ------------------------------------------------------------------------------------

def test_the_page_says_its_language(client):
    assert '<html lang="en">' in client.get("/").get_data(as_text=True)
    chinese = client.get("/", headers=ZH).get_data(as_text=True)
    assert '<html lang="zh-Hans">' in chinese
    assert "跳到正文" in chinese and ">登录</a>" in chinese and ">注册</a>" in chinese
    for english in ("Pricing", "Log in", "Sign up", "Terms", "Privacy", "Refunds", "Contact", "Status"):
        assert f">{english}</a>" not in chinese and f">{english}</a>" in client.get("/").get_data(as_text=True), english


def test_the_switcher_shows_each_language_in_its_own_words(client):
    html = client.get("/pricing?x=1").get_data(as_text=True)
    form = html.split('action="/language"')[1].split("</form>")[0]
    assert 'name="next" value="/pricing?x=1"' in form
    assert re.search(r'value="en" lang="en"\s+aria-pressed="true">English</button>', form)
    assert re.search(r'value="zh" lang="zh-Hans"\s+aria-pressed="false">简体中文</button>', form)


def test_switching_language_keeps_it_on_the_account_and_goes_back(app, client, auth):
    auth.user()
    answer = client.post("/language", data={"lang": "zh", "next": "/pricing"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/pricing"
    db.session.rollback()
    assert db.session.scalar(select(User.locale).where(User.email == "person@example.com")) == "zh"
    with client.session_transaction() as session:
        assert session["lang"] == "zh"
    page = client.get("/pricing").get_data(as_text=True)  # no Accept-Language: the account's choice
    assert '<html lang="zh-Hans">' in page and "退出登录" in page


def test_switching_language_before_login_keeps_it_in_the_session(client):
    answer = client.post("/language", data={"lang": "zh", "next": "/login"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"
    assert '<html lang="zh-Hans">' in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_the_switcher_refuses_to_send_people_off_site(client, target):
    answer = client.post("/language", data={"lang": "zh", "next": target})
    assert answer.status_code == 303
    assert "evil.example" not in answer.headers["Location"]


def test_error_pages_speak_the_persons_language(client):
    missing = client.get("/no/such/page", headers=ZH)
    html = missing.get_data(as_text=True)
    assert missing.status_code == 404 and "页面不存在" in html and "此地址没有任何内容。" in html and "返回首页" in html
    english = client.get("/no/such/page").get_data(as_text=True)
    assert "<h1>Page not found</h1>" in english and "There is nothing at this address." in english


def test_the_outage_page_speaks_the_sessions_language_without_reading_the_account(database, tmp_path):
    """The account holds a chosen language, but the account is in the database that is away."""
    app = make_app(database, tmp_path, SQLALCHEMY_DATABASE_URI="postgresql+psycopg://tollgate@127.0.0.1:9/x",
                   SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": 2}})
    try:
        client = app.test_client()
        with client.session_transaction() as session:
            session["_user_id"], session["sid"] = "1:0", "a-session"  # signed in: loading them needs the database
            session["lang"] = "zh"
        page = client.get("/pricing")
        html = page.get_data(as_text=True)
        assert page.status_code == 503 and "暂时无法访问" in html and '<html lang="zh-Hans">' in html
        assert HASHED.match(page_assets(html)[0])
        english = app.test_client().get("/pricing")
        assert english.status_code == 503 and "Temporarily unavailable" in english.get_data(as_text=True)
    finally:
        app.extensions["tollgate.gateway"].close()


# --- colours ---------------------------------------------------------------------------------------

def _colours(css: str, dark: bool) -> dict[str, str]:
    light_block = re.search(r":root \{(.*?)\n\}", css, re.S).group(1)
    colours = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", light_block))
    if dark:
        dark_block = re.search(r"prefers-color-scheme: dark\) \{\s*:root \{(.*?)\}", css, re.S).group(1)
        colours.update(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", dark_block))
    return colours


def _contrast(a: str, b: str) -> float:
    def luminance(colour):
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b_ = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b_
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


TEXT = ["ink", "muted", "accent", "danger", "ok", "caution"]
BACKGROUNDS = ["bg", "surface", "info-bg", "warn-bg", "error-bg"]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_colours_contrast(dark):
    """Text >= 4.5:1 on every background it sits on; control edges and the focus ring >= 3:1 (WCAG AA)."""
    colours = _colours((ROOT / "static/css/app.css").read_text(), dark)
    low = [f"{t} on {b}: {_contrast(colours[t], colours[b]):.2f}" for t in TEXT for b in BACKGROUNDS
           if _contrast(colours[t], colours[b]) < 4.5]
    low += [f"{t} on {b}: {_contrast(colours[t], colours[b]):.2f}" for t in ("line", "focus")
            for b in ("bg", "surface") if _contrast(colours[t], colours[b]) < 3]
    pairs = [("accent-ink", "accent"), ("danger-ink", "danger"), ("pre-ink", "pre-bg"), ("ink", "code-bg")]
    low += [f"{a} on {b}: {_contrast(colours[a], colours[b]):.2f}" for a, b in pairs if _contrast(colours[a], colours[b]) < 4.5]
    assert not low, low


def test_the_contrast_check_can_fail():
    assert _contrast("#dde2ea", "#ffffff") < 3  # the old input border
    assert _contrast("#000000", "#ffffff") == pytest.approx(21)


def test_nothing_in_the_stylesheet_hides_a_wide_page_instead_of_fixing_it():
    css = (ROOT / "static/css/app.css").read_text()
    assert not re.search(r"(html|body)[^{]*\{[^}]*overflow-x\s*:\s*(hidden|clip)", css)
