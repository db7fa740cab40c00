"""Every mail in its recipient's language: the account's choice, else the language of the request
that caused it (a sign-up), else English. Amounts in the language's US dollars, dates in its form;
mail sent by CLI jobs and the background sender (no request) too. Mail to the operator: English."""
from datetime import datetime, timezone

import pytest

from portal import expiry, ledger, notices, payments
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, EntryKind, User
from tests.conftest import stripe_settings
from tests.factories import make_user, open_checkout
from tests.web.helpers import outbox, publish_terms, register

UTC = timezone.utc
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)  # top-ups through the fake Stripe


def chinese(user) -> None:
    with atomic():
        db.session.get(User, user.id).locale = "zh"


def mail_to(app, address: str) -> list:
    return [m for m in outbox(app) if m["To"] == address]


def low_balance_mail(app, address: str, zh: bool):
    """$2.50 left under a $3.00 alert: the one mail the background sender sends (no request, only the app)."""
    user = make_user(address, credit=2_500_000)
    if zh:
        chinese(user)
    with atomic():
        db.session.get(Account, user.account.id).low_balance_threshold = 3_000_000
    assert notices.send_low_balance(user.account.id)
    [message] = mail_to(app, address)
    return message


def test_the_low_balance_mail_of_a_chinese_account_is_chinese_with_us_dollars(app):
    """Sent by the background sender after a charge: no request, only the app."""
    message = low_balance_mail(app, "zh@example.com", zh=True)
    assert message["Subject"] == "您的余额已低于 US$3.00"
    body = message.get_content()
    assert "您的可用余额为 US$2.50，已低于您设置的提醒金额 US$3.00。" in body
    assert "余额不足以支付调用时" in body and "http://localhost/billing/" in body
    assert "Top up" not in body and "balance" not in body


def test_an_account_without_a_choice_gets_english(app):
    message = low_balance_mail(app, "en@example.com", zh=False)
    assert message["Subject"] == "Your balance is below $3.00"
    assert "Your available balance is $2.50, below the $3.00" in message.get_content()


def test_a_top_up_mail_is_chinese_with_a_chinese_date(app, fake_stripe):
    user = make_user("zh@example.com")
    chinese(user)
    session_id = open_checkout(user, 2_500)
    fake_stripe.pay(session_id, "card")
    payments.handle_event(fake_stripe.session_event("checkout.session.completed", session_id))
    [message] = mail_to(app, "zh@example.com")
    assert message["Subject"] == "您充值的 US$25.00 已到账"
    body = message.get_content()
    assert "感谢充值：您充值的 US$25.00 已到账，当前余额为 US$25.00。" in body
    expires = db.session.get(Account, user.account.id).credits_expire_at
    assert f"您的全部余额有效期至 {expires.year}年{expires.month}月{expires.day}日" in body
    assert "Thank you" not in body


def test_expiry_mails_from_the_job_carry_chinese_dates(app):
    user = make_user("zh@example.com")
    chinese(user)
    topup_at = datetime(2027, 3, 31, 9, 30, tzinfo=UTC)
    with atomic():
        ledger.credit(user.account.id, 5_000_000, EntryKind.TOPUP, memo="card", reference="pay:zh",
                      topup_at=topup_at)
    expiry.run(datetime(2028, 3, 30, 9, 30, tzinfo=UTC))  # the 7-day warning, outside any request
    [warning] = mail_to(app, "zh@example.com")
    assert warning["Subject"] == "您的额度将于 2028年3月31日 过期"
    assert "您的余额 US$5.00 将于 2028年3月31日（UTC 09:30）过期" in warning.get_content()


def test_a_command_line_job_writes_in_the_account_language(app, cli):
    user = make_user("zh@example.com")
    chinese(user)
    result = cli("users", "suspend", "zh@example.com", "--reason", "card testing")
    assert result.exit_code == 0, result.output
    [message] = mail_to(app, "zh@example.com")
    assert message["Subject"] == "您的账户已被暂停"
    body = message.get_content()
    assert "您的账户已被暂停。运营方给出的原因如下：" in body and "card testing" in body


def test_the_sign_up_mail_is_in_the_language_the_person_signed_up_in(app, client):
    publish_terms()
    assert register(client.application.test_client(), "zh@example.com").status_code == 200
    client.environ_base.update(HTTP_ACCEPT_LANGUAGE=ZH["Accept-Language"])
    assert register(client, "new@example.com").status_code == 200
    [english] = mail_to(app, "zh@example.com")
    assert english["Subject"] == "Confirm your email address" and "Welcome to" in english.get_content()
    [verify] = mail_to(app, "new@example.com")
    assert verify["Subject"] == "请确认您的邮箱地址"
    body = verify.get_content()
    assert "打开此链接确认您的邮箱地址（链接 2 天内有效，仅可使用一次）：" in body and "/verify/" in body
    # The choice is kept: later mail (and the portal) follow it on every device.
    db.session.rollback()
    locales = dict(db.session.execute(db.select(User.email, User.locale)).all())
    assert (locales["new@example.com"], locales["zh@example.com"]) == ("zh", None)


def test_the_signature_is_translated(app):
    app.config["CONTACT_EMAIL"] = "help@example.com"
    message = low_balance_mail(app, "zh@example.com", zh=True)
    assert "联系邮箱：help@example.com" in message.get_content()


def test_the_operator_reads_english_whatever_language_the_sender_reads(app, client):
    app.config["OPERATOR_EMAIL"] = "operator@example.com"
    client.post("/contact", headers=ZH, data={"email": "ann@example.com", "subject": "Invoice",
                                              "message": "Where is my invoice?"})
    [message] = mail_to(app, "operator@example.com")
    body = message.get_content()
    assert "A message from the contact form" in body and "From: ann@example.com" in body
    assert "来自联系表单" not in body and "联系邮箱" not in body
