"""The billing, gift code, refund and statement pages as people use them (issue 12).

- Post/redirect/get: every successful POST answers 303; after a refused form, a reload (a GET of
  the URL the browser is left on) never answers 405 and never repeats the action.
- Every error of a form at once, in words that say what to type, listed in the error summary.
- Headline balances cut to cents toward zero with the exact figure on hover; the statement exact.
- Tables as labelled cards; the pages in Chinese, payment methods by their Chinese names.
"""
import re
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select

from portal import giftcodes, ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, GiftCode, Payment, RefundRequest
from tests.conftest import stripe_settings
from tests.domain.test_refunds_approval import USD, pay_by_hand
from tests.factories import PASSWORD
from tests.web.test_billing import AMOUNT_HELP, checkout_requests

HX = {"HX-Request": "true"}


@pytest.fixture
def settings():
    return {}


@pytest.fixture
def app_config(fake_stripe, settings):
    return {**stripe_settings(fake_stripe), **settings}


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def checkouts(fake) -> int:
    return len(checkout_requests(fake))


def account(user) -> Account:
    db.session.rollback()
    return db.session.get(Account, user.account.id)


def reload(client, path):
    """What a reload of `path` asks: a GET; followed to the page it leads to. The page must be there."""
    response = client.get(path)
    assert response.status_code in (200, 303), (path, response.status_code)
    if response.status_code == 303:
        assert response.headers["Location"].startswith("/billing/"), response.headers["Location"]
        response = client.get(response.headers["Location"])
    assert response.status_code == 200
    return response.get_data(as_text=True)


def to_chinese(client):
    assert client.post("/language", data={"lang": "zh", "next": "/billing/"}).status_code == 303


# -- 1. post/redirect/get -------------------------------------------------------------------------

REFUSED = [  # (path, form data, where a reload of the path leads)
    ("/billing/checkout", {"amount": "abc"}, "/billing/#topup"),
    ("/billing/checkout", {"preset": "7000000"}, "/billing/#topup"),
    ("/billing/alerts", {"threshold": "lots"}, "/billing/#alerts"),
    ("/billing/auto-topup", {"auto_enabled": "y", "auto_threshold": "x", "auto_amount": "1", "auto_limit": ""},
     "/billing/#autotopup"),
    ("/billing/codes/redeem", {"code": "TG-ZZZZ-ZZZZ-ZZZZ-ZZZZ"}, "/billing/#codes"),
]


@pytest.mark.parametrize("path, data, back", REFUSED)
def test_a_reload_after_a_refused_billing_form_acts_on_nothing(client, auth, fake_stripe, path, data, back):
    user = auth.user()
    refused = client.post(path, data=data)
    assert refused.status_code == 422 and 'id="error-summary"' in refused.get_data(as_text=True)
    answer = client.get(path)  # the reload
    assert answer.status_code == 303 and answer.headers["Location"] == back
    assert "<h1>Billing</h1>" in reload(client, path)
    assert checkouts(fake_stripe) == 0 and count(Payment) == 0
    assert db.session.scalar(select(GiftCode).where(GiftCode.redeemed_at.is_not(None))) is None
    acct = account(user)
    assert (acct.auto_topup_enabled, acct.low_balance_threshold) == (False, 1_000_000)


def test_a_reload_after_stripe_failed_starts_no_checkout(client, auth, fake_stripe):
    auth.user()
    fake_stripe.fail_checkout = True
    refused = client.post("/billing/checkout", data={"preset": "5000000"})
    assert refused.status_code == 422 and 'data-testid="topup-error"' in refused.get_data(as_text=True)
    tried = checkouts(fake_stripe)
    fake_stripe.fail_checkout = False
    reload(client, "/billing/checkout")
    assert checkouts(fake_stripe) == tried and count(Payment) == 0


SUCCEEDING = [  # (path, form data): each answers 303 to the page it came from
    ("/billing/alerts", {"threshold": "2.50"}),
    ("/billing/auto-topup", {"auto_enabled": "y", "auto_threshold": "5", "auto_amount": "20", "auto_limit": "60"}),
    ("/billing/auto-topup/forget-card", {}),
]


@pytest.mark.parametrize("path, data", SUCCEEDING)
def test_saved_billing_forms_redirect_and_a_reload_is_a_plain_get(client, auth, fake_stripe, path, data):
    auth.user()
    saved = client.post(path, data=data)
    assert saved.status_code == 303 and saved.headers["Location"] == "/billing/"
    assert "<h1>Billing</h1>" in reload(client, saved.headers["Location"])
    assert reload(client, path)  # even the form's own URL: no 405


def test_a_top_up_redirects_to_stripe_and_the_billing_page_starts_nothing_more(client, auth, fake_stripe):
    auth.user()
    started = client.post("/billing/checkout", data={"amount": "20"})
    assert started.status_code == 303 and started.headers["Location"].startswith(fake_stripe.url)
    reload(client, "/billing/")
    reload(client, "/billing/checkout")
    assert checkouts(fake_stripe) == 1 and count(Payment) == 1


def test_a_redeemed_code_is_redeemed_once_whatever_is_reloaded(client, auth):
    user = auth.user()
    with atomic():
        [code] = giftcodes.create(5_000_000)
    done = client.post("/billing/codes/redeem", data={"code": code})
    assert done.status_code == 303 and done.headers["Location"] == "/billing/"
    assert "Added $5.00 to your balance." in reload(client, "/billing/")
    reload(client, "/billing/codes/redeem")
    assert account(user).balance == 5_000_000


def test_the_refund_form_reloads_without_filing(client, auth):
    user = auth.user()
    pay_by_hand(user, 5 * USD)
    refused = client.post("/billing/refund/", data={"password": "wrong"})
    assert refused.status_code == 422 and "Your password is not correct." in refused.get_data(as_text=True)
    page = client.get("/billing/refund/")  # the refused form was shown at the page's own URL
    assert page.status_code == 200 and count(RefundRequest) == 0
    filed = client.post("/billing/refund/", data={"password": PASSWORD})
    assert filed.status_code == 303 and filed.headers["Location"] == "/billing/refund/"
    assert client.get("/billing/refund/").status_code == 200 and count(RefundRequest) == 1
    cancelled = client.post("/billing/refund/cancel")
    assert cancelled.status_code == 303
    again = client.get("/billing/refund/cancel")  # a reload of the cancel URL
    assert again.status_code == 303 and again.headers["Location"] == "/billing/refund/"
    db.session.rollback()
    assert db.session.scalar(select(RefundRequest.status)) == "cancelled"


# -- 2. every error at once, saying what to type ---------------------------------------------------

def summary_links(html) -> list[str]:
    box = re.search(r'<div class="error-summary".*?</div>', html, re.S)
    assert box, "no error summary"
    return re.findall(r'<a href="#([\w-]+)">', box.group(0))


def test_every_wrong_auto_top_up_field_is_said_at_once(client, auth, fake_stripe):
    auth.user()
    refused = client.post("/billing/auto-topup", data={"auto_enabled": "y", "auto_threshold": "five",
                                                       "auto_amount": "4", "auto_limit": "-3"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert summary_links(html) == ["auto_threshold", "auto_amount", "auto_limit"]
    assert "There are 3 problems" in html
    for field in ("auto_threshold", "auto_amount", "auto_limit"):
        assert f'id="{field}-error"' in html
    assert "Enter an amount in US dollars up to $1,000,000, like 5 or 2.50." in html
    assert AMOUNT_HELP in html
    assert "Enter an amount in US dollars up to $1,000,000, like 100 or 250." in html
    # What was typed stays in the fields.
    assert 'value="five"' in html and 'value="4"' in html and 'value="-3"' in html


def test_a_ceiling_below_the_amount_is_said_with_the_amount(client, auth, fake_stripe):
    auth.user()
    html = client.post("/billing/auto-topup", data={"auto_threshold": "5", "auto_amount": "20",
                                                    "auto_limit": "10"}).get_data(as_text=True)
    assert summary_links(html) == ["auto_limit"]
    assert "Enter at least one top-up ($20.00), like 100: the monthly ceiling must allow one charge." in html


def test_every_wrong_refund_field_is_said_at_once(client, auth):
    user = auth.user()
    pay_by_hand(user, 5 * USD)
    refused = client.post("/billing/refund/", data={"reason": "x" * 2001, "password": ""})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422 and summary_links(html) == ["reason", "password"]
    assert "Keep it under 2,000 characters, or leave it empty." in html
    assert "Enter your password: asking stops your API keys, so we check it is you." in html


@pytest.mark.parametrize("settings", [{"TOPUP_MIN": 2_500_000, "TOPUP_MAX": 1_000_000_000, "TOPUP_PRESETS": (2_500_000,)}])
def test_the_amount_error_reads_its_bounds_from_the_configuration(client, auth, fake_stripe, settings):
    auth.user()
    html = client.post("/billing/checkout", data={"amount": "1"}, headers=HX).get_data(as_text=True)
    assert "Enter an amount in US dollars between $2.50 and $1,000, like 20 or 12.50." in html
    assert summary_links(html) == ["amount"]
    assert "In US dollars, from $2.50 to $1,000." in client.get("/billing/").get_data(as_text=True)


# -- 3. balances: two decimals cut toward zero, exact on hover; the statement exact -----------------

def test_headline_balances_are_cut_to_cents_with_the_exact_figure_in_the_title(client, auth):
    user = auth.user(credit=12_345_678)
    with atomic():
        ledger.hold(user.account.id, 9_999)  # available: $12.335679
    html = client.get("/billing/").get_data(as_text=True)
    assert 'data-testid="balance"><span class="money" title="$12.345678">$12.34</span>' in html
    assert 'data-testid="available"><span class="money" title="$12.335679">$12.33</span>' in html
    statement = client.get("/statement/").get_data(as_text=True)
    assert 'data-testid="balance">$12.345678<' in statement  # the statement is exact


def test_the_statement_shows_exact_figures_in_labelled_cards(client, auth):
    user = auth.user(credit=3_000_000)
    with atomic():
        hold_id = ledger.hold(user.account.id, 50)
    with atomic():
        ledger.settle(hold_id, 50, memo="echo-1 req_x")
    html = client.get("/statement/").get_data(as_text=True)
    assert '<body class="wide"' in html
    assert re.search(r'<table class="cards[^"]*">\s*<caption', html)
    assert "-$0.00005" in html and "$2.99995" in html and "Usage: 1 call" in html
    cells = re.findall(r"<td[^>]*>", html)
    assert cells and all("data-label=" in c for c in cells)
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}</td>", html)  # the credit's minute, ISO


def test_the_past_top_ups_are_labelled_cards_whose_links_name_their_payment(client, auth):
    user = auth.user()
    with atomic():
        db.session.add(Payment(account_id=user.account.id, source="stripe", status="paid", amount=20_000_000,
                               checkout_session_id="cs_test_ux", method="alipay",
                               receipt_url="https://pay.stripe.com/receipts/ux"))
    html = client.get("/billing/").get_data(as_text=True)
    table = re.search(r'<table class="cards payments">.*?</table>', html, re.S).group(0)
    assert "<caption" in table and all("data-label=" in c for c in re.findall(r"<td[^>]*>", table))
    assert re.search(r'aria-label="Receipt for \$20\.00 of \d{4}-\d{2}-\d{2} \d{2}:\d{2}"', table)


# -- 5. Chinese ------------------------------------------------------------------------------------

class _Visible(HTMLParser):
    """The text of headings, buttons, labels, table headers, captions and figure names inside <main>."""

    WATCHED = {"h1", "h2", "h3", "button", "label", "th", "caption", "dt", "legend", "summary"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.in_main, self.open, self.found = False, [], []

    def handle_starttag(self, tag, attrs):
        if tag == "main":
            self.in_main = True
        elif self.in_main and tag in self.WATCHED:
            self.open.append([tag, ""])

    def handle_endtag(self, tag):
        if tag == "main":
            self.in_main = False
        elif self.open and self.open[-1][0] == tag:
            self.found.append(" ".join(self.open.pop()[1].split()))

    def handle_data(self, data):
        if self.open:
            self.open[-1][1] += data


# Words that are the same in Chinese: currency, units, brands, formats.
KEPT = {"US", "USD", "UTC", "API", "Stripe", "JSON", "CSV"}


def english_left(html) -> list[str]:
    parser = _Visible()
    parser.feed(html)
    return [text for text in parser.found
            if any(word not in KEPT for word in re.findall(r"[A-Za-z]{2,}", text))]


@pytest.mark.parametrize("settings", [{"STRIPE_PAYMENT_METHODS": ("card", "alipay", "wechat_pay")}])
def test_the_billing_page_in_chinese_has_no_english_left(client, auth, fake_stripe, settings):
    user = auth.user(credit=1_500_000)
    with atomic():
        db.session.add(Payment(account_id=user.account.id, source="stripe", status="paid", amount=20_000_000,
                               checkout_session_id="cs_test_zh", method="wechat_pay",
                               receipt_url="https://pay.stripe.com/receipts/zh"))
    to_chinese(client)
    html = client.get("/billing/").get_data(as_text=True)
    assert "<h1>账单</h1>" in html or "账单" in html
    assert english_left(html) == []
    assert "支付宝" in html and "微信支付" in html and "Alipay" not in html and "WeChat Pay" not in html
    assert 'title="US$1.50">US$1.50<' in html
    # Paragraphs written over several lines in the template are found in the catalogue too.
    assert "额度在最后一次充值 12 个月后过期" in html and "Credits expire 12 months" not in html
    assert "您将在 Stripe 的页面上付款，可使用银行卡、支付宝或微信支付。" in html
    # Errors too, and the bounds in the Chinese way of writing dollars.
    refused = client.post("/billing/checkout", data={"amount": "3"}).get_data(as_text=True)
    assert "请输入 US$5 到 US$500 之间的美元金额，例如 20 或 12.50。" in refused
    assert english_left(refused) == []
    refused = client.post("/billing/auto-topup", data={"auto_threshold": "x", "auto_amount": "x", "auto_limit": "x"})
    assert english_left(refused.get_data(as_text=True)) == []


def test_the_statement_and_refund_pages_in_chinese(client, auth):
    user = auth.user(credit=3_000_000)
    pay_by_hand(user, 5 * USD)
    with atomic():
        hold_id = ledger.hold(user.account.id, 120_000)
    with atomic():
        ledger.settle(hold_id, 120_000, memo="echo-1 req_x")
    to_chinese(client)
    statement = client.get("/statement/").get_data(as_text=True)
    assert english_left(statement) == [] and "用量：1 次调用" in statement
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", statement)
    refund = client.get("/billing/refund/").get_data(as_text=True)
    assert english_left(refund) == [] and "申请退款" in refund
    refused = client.post("/billing/refund/", data={"password": "wrong"}).get_data(as_text=True)
    assert "密码不正确" in refused and english_left(refused) == []
    flashed = client.post("/billing/refund/", data={"password": PASSWORD}, follow_redirects=True)
    assert "我们已收到您的退款申请" in flashed.get_data(as_text=True)


def test_a_code_refusal_in_chinese(client, auth):
    auth.user()
    to_chinese(client)
    html = client.post("/billing/codes/redeem", data={"code": "TG-ZZZZ-ZZZZ-ZZZZ-ZZZZ"}).get_data(as_text=True)
    assert "无法识别此兑换码，请检查后重试。" in html and english_left(html) == []
