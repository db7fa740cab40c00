"""A Chinese reader sees no English: every portal and console page, every form's refusals, and the
API's error messages, read in zh, hold no Latin word except names (products, brands, the site,
models and keys the fixtures made), codes and units.

What is read is the visible text of <main>: not <code>/<pre>/<kbd>/<samp>, not an element marked
translate="no" (brand and product names), not <script>/<style>/<textarea>/<svg>, and no attribute
value. E-mail addresses and URLs are taken out first. Any other run of three or more Latin letters
is a word someone forgot to translate: a template string without a zh entry, or a message built in
Python outside gettext.
"""
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
import requests
from sqlalchemy import select, update

from portal import apikeys, catalog, giftcodes, inbox, ledger, legal, refunds, status
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, EntryKind, GiftCode, LegalKind, Payment, User, utcnow
from tests.conftest import stripe_settings
from tests.domain.test_dashboards import Calls
from tests.factories import make_model, make_user

WORD = re.compile(r"[A-Za-z]{3,}")
# Taken out before words are looked for: they are addresses, identifiers or file names, not prose.
NOT_PROSE = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|\bhttps?://\S+"  # URLs
    r"|(?<![\w/])/(?:v1|billing|keys|usage|account|statement|admin|legal)\b[\w/.-]*"  # paths
    r"|\b[\w/-]*\.(?:json|csv|md|py|txt)\b|(?<!\w)\.(?:json|csv)\b"  # file names and extensions
    r"|\btg_…\w+|\bTG-…\w+|\breq_\w*|\bTG-XXXX-XXXX-XXXX-XXXX\b"  # key hints, request ids, a gift code's shape
    r"|\b\w*_\w+"  # snake_case: JSON fields, settings (TOOL_CALLS_CEILING) and functions (round_half_up)
    r"|\bRetry-After\b|\bx-api-key\b"  # HTTP headers as sent
    r'|"[\w.-]+"'  # a JSON field or value in straight quotes ("model")
)

# Words a Chinese page keeps in Latin letters, each for a reason.
ALLOWED = {
    # Abbreviations, units and formats Chinese technical writing leaves as they are.
    "API", "USD", "CSV", "JSON", "SDK", "HTTP", "HTTPS", "https", "URL", "UTC", "DNS", "ISO", "HTML", "Markdown",
    "PNG", "JPEG", "SVG", "WebP",
    # "token" is the word Chinese documentation about language models uses for the billing unit.
    "token", "tokens",
    # HTTP methods and JSON literals, named in prose exactly as a developer sends or reads them.
    "GET", "POST", "null", "true", "false", "Authorization", "Bearer", "KEY",
    # Service tiers are the values an API call sends (service_tier: "priority").
    "priority", "flex",
    # Brand, product and language names.
    "Stripe", "OpenAI", "Anthropic", "Claude", "Code", "Codex", "curl", "Python", "Echo",
    "Responses",  # OpenAI's Responses API, a product name as its Chinese documentation keeps it
    # The language switcher names each language in its own language.
    "English",
    # What an operator types in a console limit field to go back to the configured default.
    "default",
    # The site's own name (SITE_NAME's default).
    "Tollgate",
    # Model ids: the fixtures' echo-1 (on the upstream echo), and gpt-4o in an example an incident form gives.
    "echo", "gpt",
    # Names the fixtures below gave things (keys, the audit's CLI user).
    "laptop", "phone", "cli", "root",
}


class _Text(HTMLParser):
    """The visible text inside <main>, without code, names marked translate="no", or attributes."""

    SKIPPED = {"code", "pre", "kbd", "samp", "script", "style", "textarea", "svg"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # open elements inside <main>, and whether each hides text
        self.in_main = False
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "main":
            self.in_main = True
            self.stack = [("main", False)]
            return
        if not self.in_main or tag in self.VOID:
            return
        hides = tag in self.SKIPPED or attrs.get("translate") == "no" or self.hidden
        self.stack.append((tag, hides))

    def handle_startendtag(self, tag, attrs):
        pass  # <br/>, <img/>: no text

    def handle_endtag(self, tag):
        if not self.in_main:
            return
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == tag:
                del self.stack[depth:]
                break
        if tag == "main":
            self.in_main = False

    @property
    def hidden(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_data(self, data):
        if self.in_main and not self.hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    return " ".join(" ".join(parser.parts).split())


def english(text: str, allowed=frozenset()) -> list[str]:
    """The Latin words in `text` that are not names or units a Chinese page keeps."""
    text = NOT_PROSE.sub(" ", text)
    return sorted({w for w in WORD.findall(text) if w not in ALLOWED and w not in allowed})


def leftovers(html: str, allowed=frozenset()) -> tuple[list[str], str]:
    text = visible_text(html)
    return english(text, allowed), text


def context(word: str, text: str) -> str:
    at = re.search(rf"\b{word}\b", text)
    return text[max(0, at.start() - 60):at.end() + 60] if at else ""


def report(found: dict[str, tuple[list[str], str]]) -> str:
    lines = []
    for url, (words, text) in found.items():
        lines.append(f"{url}: {', '.join(words)}")
        lines.extend(f"    ...{context(w, text)}..." for w in words[:8])
    return "\n".join(lines)


# --- the people and their data -------------------------------------------------------------------

@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


def paid_by_hand(user, amount, reference) -> None:
    """A bank transfer the operator recorded, described in Chinese (what people write is not ours to translate)."""
    with atomic():
        db.session.add(Payment(account_id=user.account.id, source="manual", status="paid", amount=amount,
                               reference=reference, method="银行转账", paid_at=utcnow()))
        ledger.credit(user.account.id, amount, EntryKind.TOPUP, memo="银行转账", reference=f"manual:{reference}",
                      topup_at=utcnow())


@pytest.fixture
def world(app, client, auth):
    """A person reading in Chinese (logged in on `client`) with keys, calls, a top-up and credit; an
    admin reading in Chinese on a client of their own; something on every console page.

    Whatever people typed (memos, incident titles, messages, terms) is Chinese here: the test looks
    for English the software wrote."""
    model = make_model("echo-1")
    person = make_user("person@example.com")
    with atomic():
        ledger.credit(person.account.id, 5_000_000, EntryKind.GRANT, memo="欢迎赠送")
        db.session.get(User, person.id).locale = "zh"
        laptop, _ = apikeys.issue(db.session.get(User, person.id), "laptop")
        apikeys.issue(db.session.get(User, person.id), "phone")
    calls = Calls()
    calls.keys[person.id] = laptop.id
    call = calls.add(person, model, utcnow() - timedelta(hours=1), cost=1_234_567)
    calls.add(person, model, utcnow() - timedelta(days=2), cost=20_000, status="upstream_error")
    paid_by_hand(person, 3_000_000, "TT-0001")
    assert auth.login().status_code == 302

    other = make_user("alice@example.com")
    paid_by_hand(other, 2_000_000, "TT-0002")
    with atomic():
        refund_id = refunds.request(db.session.get(User, other.id), "不再使用").id
    message_id = inbox.submit(email="bob@example.com", subject="发票", message="发票在哪里？",
                              category="billing").message.id
    with atomic():
        incident_id = status.add(Actor.cli(), "响应变慢", "正在排查。").id
        legal.publish(LegalKind.TERMS, "v1", "# 服务条款\n\n友善待人。")
    with atomic():
        used, expired = giftcodes.create(1_000_000, 2, expires_at=utcnow() + timedelta(days=1))
        giftcodes.redeem(db.session.get(User, other.id), used)
        db.session.execute(update(GiftCode).where(GiftCode.code_hash == giftcodes.hash_code(expired))
                           .values(expires_at=utcnow() - timedelta(days=1)))
    console = app.test_client()
    admin = auth.admin(client=console)
    with atomic():
        db.session.get(User, admin.id).locale = "zh"
    return {"person": person, "model": model, "key": laptop.id, "call": call["request_id"], "console": console,
            "other": other, "refund": refund_id, "message": message_id, "incident": incident_id,
            "admin": admin, "used_code": used, "expired_code": expired}


def portal_pages(w) -> list[str]:
    key = w["key"]
    return ["/", "/dashboard/", "/keys/", f"/keys/{key}/limits", f"/keys/{key}/rename", f"/keys/{key}/revoke",
            "/usage/", "/usage/?days=7", f"/usage/{w['call']}", "/billing/",
            "/billing/refund/", "/billing/cancel", "/statement/", "/account/", "/account/2fa",
            "/models", "/pricing", "/quickstart", "/contact", "/status",
            "/terms", "/privacy", "/legal/refunds"]


def console_pages(w) -> list[str]:
    return ["/admin/", "/admin/?days=7", "/admin/users", f"/admin/users/{w['person'].id}",
            f"/admin/users/{w['other'].id}", "/admin/refunds", f"/admin/refunds/{w['refund']}", "/admin/inbox",
            f"/admin/inbox/{w['message']}", "/admin/announcements", "/admin/models", "/admin/models/new",
            "/admin/models/import", f"/admin/models/{w['model'].id}", "/admin/upstreams", "/admin/upstreams/new",
            f"/admin/upstreams/{w['model'].upstream_id}", "/admin/signals", "/admin/site", "/admin/site/incidents",
            f"/admin/site/incidents/{w['incident']}", "/admin/legal", "/admin/legal/terms", "/admin/legal/terms/v1",
            "/admin/audit"]


def read(client, urls) -> dict:
    found = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        words, text = leftovers(response.get_data(as_text=True))
        if words:
            found[url] = (words, text)
    return found


def test_every_portal_page_reads_in_chinese(client, world):
    found = read(client, portal_pages(world))
    assert not found, "English left on portal pages:\n" + report(found)


def test_every_console_page_reads_in_chinese(world):
    found = read(world["console"], console_pages(world))
    assert not found, "English left on console pages:\n" + report(found)


# Memos the software writes on ledger entries, as giftcodes.py, users.py, payments.py, expiry.py,
# refunds.py and moderation.py write them: the entry keeps the English, the statement shows it translated.
SOFTWARE_MEMOS = [
    "welcome credit", "demo credit", "Gift code TG-…AB12", "top-up by Stripe Checkout (payment #7)",
    "automatic top-up (payment #8)", "top-up by 银行转账 (reference TT-9)",
    "refund made in Stripe (payment #7, charge ch_123)", "payment #7 disputed (Stripe dispute dp_123)",
    "credits expired on 2026-01-02, 12 months after the last top-up",
    "refund request 4: to be paid back by hand (manual top-up)", "refund request 4: refunded through Stripe",
    "balance forfeited: account terminated by the operator (without refund, as the terms allow)",
]


def test_memos_the_software_wrote_read_in_chinese(client, world):
    with atomic():
        for memo in SOFTWARE_MEMOS:
            ledger.credit(world["person"].account.id, 1_000, EntryKind.GRANT, memo=memo)
    found = read(client, ["/statement/"])
    found.update(read(world["console"], [f"/admin/users/{world['person'].id}"]))
    assert not found, "English memos:\n" + report(found)


# --- refusals: every form given bad input answers in Chinese ------------------------------------

def portal_refusals(w) -> list[tuple[str, dict]]:
    key = w["key"]
    return [
        ("/keys/", {"name": ""}),
        ("/keys/", {"name": "x" * 300}),
        (f"/keys/{key}/rename", {"name": ""}),
        (f"/keys/{key}/limits", {"spend_cap_total": "lots", "spend_cap_monthly": "-1", "expires_on": "someday",
                                 "ip_allowlist": "300.1.1.1/99", "max_concurrency": "many", "max_rpm": "-5",
                                 "max_tpm": "x"}),
        (f"/keys/{key}/limits", {"allowed_models": "zz-9", "spend_cap_total": "0.000001"}),
        ("/billing/checkout", {"amount": "abc"}),
        ("/billing/checkout", {"amount": "100000"}),
        ("/billing/checkout", {"preset": "7000000"}),
        ("/billing/alerts", {"threshold": "lots"}),
        ("/billing/auto-topup", {"auto_enabled": "y", "auto_threshold": "x", "auto_amount": "1", "auto_limit": "z"}),
        ("/billing/codes/redeem", {"code": "   "}),
        ("/billing/codes/redeem", {"code": "hello"}),
        ("/billing/codes/redeem", {"code": "TG-ZZZZ-ZZZZ-ZZZZ-ZZZZ"}),
        ("/billing/codes/redeem", {"code": w["used_code"]}),
        ("/billing/codes/redeem", {"code": w["expired_code"]}),
        ("/billing/refund/", {"reason": "", "password": "wrong password"}),
        ("/account/password", {"pw-current": "wrong password", "pw-new": "short"}),
        ("/account/email", {"em-email": "not an address", "em-password": "wrong password"}),
        ("/account/close", {"close-password": "wrong password"}),
        ("/account/2fa", {"code": "000000"}),
        ("/contact", {"email": "not an address", "subject": "", "message": "", "category": "nonsense"}),
        ("/contact", {"email": "person@example.com", "subject": "x" * 300, "message": "你好", "category": "abuse",
                      "reference": "a whole sentence that is no key"}),
    ]


def console_refusals(w) -> list[tuple[str, dict]]:
    person, model, upstream = w["person"].id, w["model"].id, w["model"].upstream_id
    return [
        (f"/admin/users/{person}/suspend", {"reason": ""}),
        (f"/admin/users/{person}/adjust", {"amount": "lots", "reason": ""}),
        (f"/admin/users/{person}/adjust", {"amount": "-1000", "confirm": "y", "reason": "更正"}),
        (f"/admin/users/{person}/adjust", {"amount": "--1", "confirm": "y", "reason": "更正"}),
        (f"/admin/users/{person}/refund", {"reason": ""}),
        (f"/admin/users/{person}/limits", {"target": "account", "rpm": "abc", "tpm": "-1", "concurrency": "x"}),
        (f"/admin/users/{person}/terminate", {"reason": ""}),
        (f"/admin/users/{person}/keys/{w['key']}/revoke", {"reason": ""}),
        (f"/admin/users/{w['admin'].id}/suspend", {"reason": "测试", "confirm": "y"}),
        ("/admin/announcements/send", {"subject": "", "body": "", "audience": "everyone"}),
        (f"/admin/inbox/{w['message']}/reply", {"body": ""}),
        ("/admin/legal/terms", {"version": "", "body": "", "action": "publish"}),
        (f"/admin/models/{model}/price", {"input": "1.2.3", "output": "-1", "effective": "later", "effective_at": "",
                                          "reason": ""}),
        (f"/admin/models/{model}/settings", {"max_output_tokens": "abc", "context_window": "x",
                                             "tool_calls_ceiling": "-3"}),
        (f"/admin/models/{model}/cost", {"cost_input": "1.2.3"}),
        (f"/admin/models/{model}/routes", {"upstream": "999", "priority": "x", "weight": "-1"}),
        (f"/admin/models/{model}/enabled", {"reason": ""}),
        ("/admin/models/new", {"public_id": "bad id!", "upstream": str(upstream), "input": "x", "output": ""}),
        ("/admin/models/new", {"public_id": "echo-1", "upstream": str(upstream), "input": "1", "output": "1"}),
        ("/admin/models/import", {"effective": "now"}),
        (f"/admin/refunds/{w['refund']}/reject", {"reason": ""}),
        (f"/admin/refunds/{w['refund']}/approve", {}),
        ("/admin/site/maintenance", {"message": "", "until": "garbage"}),
        ("/admin/site/branding", {"site_name": "", "contact_email": "not an address"}),
        ("/admin/site/logo", {}),
        ("/admin/site/incidents", {"title": "", "body": "", "started_at": "garbage"}),
        (f"/admin/site/incidents/{w['incident']}", {"title": "", "body": ""}),
        (f"/admin/site/incidents/{w['incident']}/resolve", {"resolved_at": "garbage"}),
        ("/admin/upstreams/new", {"name": "", "protocol": "openai", "base_url": "ftp://example"}),
        ("/admin/upstreams/new", {"name": "坏名字!", "protocol": "nonsense", "base_url": "http://10.0.0.1/v1"}),
        (f"/admin/upstreams/{upstream}/disable", {"reason": ""}),
        (f"/admin/upstreams/{upstream}/edit", {"base_url": "not a url"}),
    ]


def console_actions(w) -> list[tuple[str, dict]]:
    """Console actions that succeed (or find nothing to do), each answered by a flash."""
    person, other = w["person"].id, w["other"].id
    return [
        (f"/admin/users/{person}/adjust", {"amount": "1", "confirm": "yes", "reason": "补偿"}),
        (f"/admin/users/{person}/adjust", {"amount": "-0.5", "confirm": "yes", "reason": "更正"}),
        (f"/admin/users/{person}/adjust", {"amount": "100", "confirm": "yes", "reason": "更正", "counts_as_topup": "y"}),
        (f"/admin/users/{person}/keys/{w['key']}/revoke", {"reason": "泄露", "confirm": "yes"}),
        (f"/admin/users/{person}/keys/{w['key']}/revoke", {"reason": "泄露", "confirm": "yes"}),
        (f"/admin/users/{person}/resend-verification", {"reason": "用户请求"}),
        (f"/admin/users/{other}/refund", {"reason": "用户来信"}),
        (f"/admin/users/{other}/terminate", {"reason": "违规", "confirm": "yes"}),
        (f"/admin/users/{person}/refund", {"reason": "用户来信"}),
        (f"/admin/users/{person}/suspend", {"reason": "违规", "confirm": "yes"}),
        (f"/admin/users/{person}/suspend", {"reason": "违规", "confirm": "yes"}),
        (f"/admin/users/{person}/unsuspend", {"reason": "已处理", "confirm": "yes"}),
        (f"/admin/users/{person}/unsuspend", {"reason": "已处理", "confirm": "yes"}),
        (f"/admin/users/{person}/terminate", {"reason": "违规", "confirm": "yes"}),
        (f"/admin/users/{person}/terminate", {"reason": "违规", "confirm": "yes"}),
    ]


def refuse(client, refusals) -> dict:
    """POST each bad input; read the page that answers (or the one a redirect leads to, with its flash)."""
    found = {}
    for url, data in refusals:
        response = client.post(url, data=data)
        assert response.status_code < 500, (url, response.status_code)
        if response.status_code in (302, 303):
            response = client.get(response.headers["Location"])
        words, text = leftovers(response.get_data(as_text=True))
        if words:
            found[f"POST {url} {data}"] = (words, text)
    return found


def test_every_portal_form_refuses_in_chinese(client, world):
    found = refuse(client, portal_refusals(world))
    assert not found, "English in portal refusals:\n" + report(found)


def test_every_console_form_refuses_in_chinese(world):
    found = refuse(world["console"], console_refusals(world))
    assert not found, "English in console refusals:\n" + report(found)


# --- the API: refusals follow Accept-Language -----------------------------------------------------

@pytest.fixture
def api_caller(app):
    """Keys for each refusal: one with credit, one with a spend cap it has reached, one without money;
    a model whose provider the operator paused."""
    make_model("echo-1")
    make_model("paused-1", upstream="paused")
    with atomic():
        catalog.set_upstream_enabled("paused", False)
    rich = make_user("rich@example.com", credit=10_000_000)
    poor = make_user("poor@example.com")
    with atomic():
        _, spending = apikeys.issue(db.session.get(User, rich.id), "capped")
        capped = db.session.scalars(select(ApiKey).where(ApiKey.name == "capped")).one()
        capped.spend_cap_total = 1
        _, rich_key = apikeys.issue(db.session.get(User, rich.id), "rich")
        _, poor_key = apikeys.issue(db.session.get(User, poor.id), "poor")
    return {"rich": rich_key, "capped": spending, "poor": poor_key}


API_REFUSALS = [  # (which key, model, status)
    ("rich", "no-such-model", 404),
    ("rich", "paused-1", 503),
    ("capped", "echo-1", 403),
    ("poor", "echo-1", 402),
]


@pytest.mark.parametrize("who, model, status", API_REFUSALS)
def test_api_refusals_are_chinese_when_asked(gateway, api_caller, who, model, status):
    def call(language):
        return requests.post(f"{gateway}/v1/chat/completions", timeout=20,
                             headers={"Authorization": f"Bearer {api_caller[who]}", "Accept-Language": language},
                             json={"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "你好"}]})
    chinese, english_answer = call("zh-CN,zh;q=0.9"), call("en-US")
    assert (chinese.status_code, english_answer.status_code) == (status, status)
    message = chinese.json()["error"]["message"]
    assert re.search(r"[\u4e00-\u9fff]", message), message
    assert not english(message, {"paused", "such", "model"} & set(model.split("-"))), message
    assert chinese.json()["error"]["code"] == english_answer.json()["error"]["code"]
    assert not re.search(r"[\u4e00-\u9fff]", english_answer.json()["error"]["message"])


def test_console_actions_say_what_they_did_in_chinese(world):
    found = refuse(world["console"], console_actions(world))
    assert not found, "English in console outcomes:\n" + report(found)
