"""The billing page, a refused top-up and the statement in a real browser: desktop and phone, with and
without JavaScript, in English and Chinese (issue 12).

A refused amount shows the error summary and the reason by the field, starts no checkout, and
leaves the browser on a URL that a reload (a GET of it) answers with the billing page; nothing is
wider than a phone's 390px.
"""
import pytest

from portal import ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import EntryKind, Payment, User
from tests.conftest import stripe_settings
from tests.e2e.conftest import CHROMIUM, fits, log_in_person
from tests.factories import make_user

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")

SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
WORDS = {
    "en": {"billing": "Billing", "top_up": "Top up", "amount": "Other amount, USD", "statement": "Statement",
           "error": "Enter an amount in US dollars between $5 and $500, like 20 or 12.50.", "usage": "Usage: 1 call"},
    "zh": {"billing": "账单", "top_up": "充值", "amount": "其他金额（美元）", "statement": "对账单",
           "error": "请输入 US$5 到 US$500 之间的美元金额，例如 20 或 12.50。", "usage": "用量：1 次调用"},
}


@pytest.fixture
def app_config(fake_stripe):
    return {**stripe_settings(fake_stripe), "WTF_CSRF_ENABLED": True,
            "STRIPE_PAYMENT_METHODS": ("card", "alipay", "wechat_pay")}


def person(lang: str) -> User:
    user = make_user(credit=12_345_678)
    with atomic():
        db.session.get(User, user.id).locale = lang
        hold_id = ledger.hold(user.account.id, 50)
    with atomic():
        ledger.settle(hold_id, 50, memo="echo-1 req_" + "a" * 40)
        ledger.credit(user.account.id, 1, EntryKind.GRANT, memo="a goodwill credit with a rather long reason " * 3,
                      reference="support-ticket-" + "x" * 60)
    return user


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_billing_a_refused_top_up_and_the_statement(app, gateway, browser, fake_stripe, size, javascript, lang):
    words, viewport = WORDS[lang], SIZES[size]
    person(lang)
    context = browser.new_context(viewport=viewport, java_script_enabled=javascript)
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    log_in_person(page, gateway)

    page.goto(f"{gateway}/billing/")
    page.get_by_role("heading", name=words["billing"], exact=True).wait_for()
    assert fits(page), page.url
    balance = page.get_by_test_id("balance").locator(".money")
    assert balance.inner_text() == ("$12.34" if lang == "en" else "US$12.34")
    assert balance.get_attribute("title") == ("$12.345629" if lang == "en" else "US$12.345629")
    if lang == "zh":
        hint = page.locator("#topup").inner_text()
        assert "支付宝" in hint and "微信支付" in hint

    # A refused amount: every error said, the field kept, nothing started at Stripe.
    page.get_by_label(words["amount"]).fill("3")
    page.get_by_role("button", name=words["top_up"], exact=True).click()
    summary = page.locator("#error-summary")
    summary.wait_for()
    assert words["error"] in summary.inner_text()
    assert page.locator("#amount-error").inner_text() == words["error"]
    assert page.get_by_label(words["amount"]).input_value() == "3"
    assert fits(page), page.url
    assert page.url.endswith("/billing/" if javascript else "/billing/checkout")
    # The reload: a GET of where the browser is, which is the billing page again, with nothing started.
    page.goto(page.url)
    page.get_by_role("heading", name=words["billing"], exact=True).wait_for()
    assert page.locator("#error-summary").count() == 0
    db.session.rollback()
    assert fake_stripe.requests == [] and db.session.query(Payment).count() == 0

    page.goto(f"{gateway}/statement/")
    page.get_by_role("heading", name=words["statement"], exact=True).wait_for()
    assert fits(page), page.url
    assert words["usage"] in page.locator("table.cards").inner_text()
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors
