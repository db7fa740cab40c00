"""Privacy jobs: client addresses forgotten after IP_RETENTION_DAYS, closed accounts' personal data
after CLOSED_ACCOUNT_RETENTION_DAYS, with the ledger kept whole. Fixed clocks throughout."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from portal import apikeys, dashboards, expiry, ledger, legal, retention, users
from portal.database import atomic
from portal.extensions import db
from portal.models import (Account, ApiKey, AuditEntry, ContactMessage, ContactReply, EmailToken, EntryKind, LedgerEntry,
                           LegalDecline, LegalKind,
                           Payment, PaymentSource, PaymentStatus, RecoveryCode, RefundRequest, RefundStatus, RollupDay,
                           TermsAcceptance, UsageRecord, User, UserSession)
from tests.domain.test_dashboards import Calls
from tests.factories import make_model, make_user

NOW = datetime(2026, 9, 1, 6, 0, tzinfo=timezone.utc)
IP = "198.51.100.23"


@pytest.fixture
def calls(app):
    return Calls()


def ips(table, column="client_ip"):
    db.session.rollback()
    return sorted((row.id, getattr(row, column)) for row in db.session.scalars(select(table)))


def test_client_addresses_older_than_the_retention_are_erased(app, calls):
    model = make_model()
    user = make_user("ip@example.com")
    old = calls.add(user, model, NOW - timedelta(days=90, seconds=1))
    edge = calls.add(user, model, NOW - timedelta(days=90) + timedelta(seconds=1))
    new = calls.add(user, model, NOW - timedelta(days=3))
    no_ip = calls.add(user, model, NOW - timedelta(days=200), client_ip=None)
    with atomic():
        key = db.session.get(ApiKey, calls.keys[user.id])
        key.last_used_at, key.last_used_ip = NOW - timedelta(days=120), IP
        db.session.add_all([ContactMessage(email="a@example.com", subject="s", message="m", ip=IP,
                                           created_at=NOW - timedelta(days=91)),
                            ContactMessage(email="b@example.com", subject="s", message="m", ip=IP,
                                           created_at=NOW - timedelta(days=89))])
    erased = retention.erase_old_addresses(NOW, 90)
    assert erased == {"usage_record": 1, "api_key": 1, "contact_message": 1, "terms_acceptance": 0,
                      "legal_decline": 0, "known_address": 0, "key_address": 0}
    by_request = {r.request_id: r.client_ip for r in db.session.scalars(select(UsageRecord))}
    assert by_request[old["request_id"]] is None and by_request[no_ip["request_id"]] is None
    assert by_request[edge["request_id"]] == by_request[new["request_id"]] == "203.0.113.7"
    assert [ip for _, ip in ips(ContactMessage, "ip")] == [None, IP]
    assert db.session.get(ApiKey, calls.keys[user.id]).last_used_ip is None
    # The rest of the record stays: the books and the dashboards do not move.
    assert db.session.scalar(select(func.count()).select_from(UsageRecord)) == 4
    assert retention.erase_old_addresses(NOW, 90) == dict.fromkeys(erased, 0)  # once
    # Later, the next ones are due.
    assert retention.erase_old_addresses(NOW + timedelta(days=1), 90)["usage_record"] == 1  # the edge one


def test_the_erasure_goes_in_bounded_batches_and_resumes(app, calls):
    model = make_model()
    user = make_user("many@example.com")
    for n in range(7):
        calls.add(user, model, NOW - timedelta(days=100 + n))
    assert retention.erase_old_addresses(NOW, 90, batch=2, max_batches=2)["usage_record"] == 4
    assert sum(ip is not None for _, ip in ips(UsageRecord)) == 3
    assert retention.erase_old_addresses(NOW, 90, batch=2, max_batches=2)["usage_record"] == 3
    assert all(ip is None for _, ip in ips(UsageRecord))


@pytest.fixture
def closed(app, calls):
    """A person with everything the portal keeps about someone, who then closed their account."""
    model = make_model()
    user = make_user("leaving@example.com", credit=2_000_000)
    calls.add(user, model, NOW - timedelta(days=1), client_ip=IP)
    terms = None
    with atomic():
        terms = legal.publish(LegalKind.TERMS, "v1", "Be kind.")
        row = db.session.get(User, user.id)
        key, _ = apikeys.issue(row, "Ann's laptop at home")
        key.last_used_ip, key.ip_allowlist = IP, "198.51.100.0/24"
        row.totp_secret, row.totp_last_step = "JBSWY3DPEHPK3PXP", 123
        account = db.session.get(Account, user.account.id)
        account.stripe_customer_id, account.auto_topup_card = "cus_123", "visa •••• 4242"
        account.auto_topup_payment_method, account.auto_topup_enabled = "pm_123", True
        db.session.add_all([
            TermsAcceptance(user_id=user.id, document_id=terms.id, ip=IP),
            ContactMessage(user_id=user.id, email="leaving@example.com", subject="My invoice",
                           message="I am Ann Example, 1 Main St", ip=IP),
            RecoveryCode(user_id=user.id, code_hash="x" * 64),
            EmailToken(user_id=user.id, purpose="change_email", token_hash="y" * 64, new_email="new@example.com",
                       expires_at=NOW),
            Payment(account_id=user.account.id, source=PaymentSource.STRIPE.value, status=PaymentStatus.PAID.value,
                    amount=2_000_000, refunded=0, disputed=0, receipt_url="https://pay.stripe.com/receipts/r_1",
                    invoice_url="https://invoice.stripe.com/i/1", payment_intent_id="pi_1", paid_at=NOW),
            RefundRequest(user_id=user.id, contact_email="leaving@example.com", reason="moving on, Ann",
                          balance_at_request=0, status=RefundStatus.REFUSED.value)])
        ledger.debit(user.account.id, 2_000_000, EntryKind.ADJUSTMENT, memo="used up")
    with atomic():
        message = db.session.scalar(select(ContactMessage).where(ContactMessage.user_id == user.id))
        db.session.add_all([ContactReply(message_id=message.id, author="admin@example.com",
                                         body="Dear Ann Example, here is your invoice"),
                            LegalDecline(user_id=user.id, document_id=terms.id, ip=IP, reason="I am Ann, I disagree")])
    with atomic():
        users.terminate(db.session.get(User, user.id), "closed by the user")
        db.session.get(User, user.id).status_changed_at = NOW
    return user


def ledger_rows(account_id):
    db.session.rollback()
    return [(e.id, e.kind, e.amount, e.balance_after, e.memo, e.entry_hash) for e in
            db.session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id))]


def test_a_closed_account_is_erased_after_its_retention_and_its_ledger_stays(closed):
    books = ledger_rows(closed.account.id)
    assert retention.erase_closed_accounts(NOW + timedelta(days=179, hours=23), 180).accounts == []
    assert db.session.get(User, closed.id).personal_data_erased_at is None

    later = NOW + timedelta(days=180)
    report = retention.erase_closed_accounts(later, 180)
    assert report.accounts == [closed.id] and report.waiting == []
    db.session.rollback()
    user = db.session.get(User, closed.id)
    assert user.personal_data_erased_at == later
    assert (user.email, user.email_normalized) == (f"closed-{user.id}@invalid",) * 2
    assert user.totp_secret is user.totp_last_step is user.password_hash is None
    key = db.session.scalar(select(ApiKey).where(ApiKey.user_id == user.id))
    assert (key.name, key.last_used_ip, key.ip_allowlist) == ("", None, None)
    message = db.session.scalar(select(ContactMessage).where(ContactMessage.user_id == user.id))
    assert (message.email, message.subject, message.message, message.ip) == ("", "(erased)", "(erased)", None)
    refund = db.session.scalar(select(RefundRequest).where(RefundRequest.user_id == user.id))
    assert (refund.contact_email, refund.reason) == ("", "")
    payment = db.session.scalar(select(Payment).where(Payment.account_id == user.account.id))
    assert (payment.receipt_url, payment.invoice_url, payment.payment_intent_id) == (None, None, "pi_1")
    account = db.session.get(Account, user.account.id)
    assert (account.stripe_customer_id, account.auto_topup_card, account.auto_topup_payment_method,
            account.auto_topup_enabled) == (None, None, None, False)
    assert db.session.scalar(select(TermsAcceptance.ip).where(TermsAcceptance.user_id == user.id)) is None
    assert db.session.execute(select(LegalDecline.ip, LegalDecline.reason)).one() == (None, None)
    assert db.session.scalar(select(ContactReply.body)) == "(erased)"
    assert db.session.scalar(select(UsageRecord.client_ip).where(UsageRecord.account_id == account.id)) is None
    for table in (RecoveryCode, EmailToken, UserSession):
        assert db.session.scalar(select(func.count()).select_from(table).where(table.user_id == user.id)) == 0
    # The books are untouched: the same entries, amounts and hashes (and `ledger verify` passes,
    # which the app fixture checks after every test).
    assert ledger_rows(account.id) == books and account.balance == 0
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "user.erase_personal_data"))
    assert (entry.actor, entry.target_id, entry.after["keys"], entry.after["contact_messages"]) == (
        "job:retention", str(user.id), 2, 1)  # two keys: the calls' one and the laptop's
    assert "leaving@example.com" not in str((entry.reason, entry.before, entry.after))
    # Once.
    assert retention.erase_closed_accounts(later + timedelta(days=1), 180).accounts == []


def test_an_open_refund_request_keeps_the_account_until_it_is_decided(closed):
    with atomic():
        db.session.add(RefundRequest(user_id=closed.id, contact_email="leaving@example.com", reason="my money",
                                     balance_at_request=1, status=RefundStatus.REQUESTED.value))
    later = NOW + timedelta(days=400)
    report = retention.erase_closed_accounts(later, 180)
    assert (report.accounts, report.waiting) == ([], [closed.id])
    assert "waiting for an open refund" in report.summary()
    with atomic():
        for refund in db.session.scalars(select(RefundRequest).where(RefundRequest.user_id == closed.id)):
            refund.status = RefundStatus.PAID.value
    assert retention.erase_closed_accounts(later, 180).accounts == [closed.id]


def test_accounts_that_are_not_closed_are_never_erased(app):
    active = make_user("here@example.com")
    suspended = make_user("paused@example.com")
    with atomic():
        users.suspend(db.session.get(User, suspended.id), "checking")
    assert retention.erase_closed_accounts(NOW + timedelta(days=10_000), 0).accounts == []
    db.session.rollback()
    assert db.session.get(User, active.id).email == "here@example.com"
    assert retention.erase_account(active.id, NOW, 0) is None


def test_the_periodic_run_does_the_privacy_jobs_and_the_rollups(app, closed, calls):
    """The expiry timer's claimed run also erases what is due and rolls up the closed days."""
    app.config.update(IP_RETENTION_DAYS=30, CLOSED_ACCOUNT_RETENTION_DAYS=180)
    model = make_model()
    other = make_user("stays@example.com")
    calls.add(other, model, NOW - timedelta(days=31))
    assert expiry.run_due(app, NOW + timedelta(days=181)) is not None
    db.session.rollback()
    assert db.session.get(User, closed.id).personal_data_erased_at is not None
    assert all(ip is None for _, ip in ips(UsageRecord))
    assert db.session.scalar(select(func.count()).select_from(RollupDay)) == len(
        dashboards.closed_days(NOW + timedelta(days=181)))


def test_the_settings(app, tmp_path):
    from portal.config import ConfigError, load
    config = load(str(tmp_path), {})
    assert (config["IP_RETENTION_DAYS"], config["CLOSED_ACCOUNT_RETENTION_DAYS"]) == (90, 180)
    config = load(str(tmp_path), {"IP_RETENTION_DAYS": "30", "CLOSED_ACCOUNT_RETENTION_DAYS": "0"})
    assert (config["IP_RETENTION_DAYS"], config["CLOSED_ACCOUNT_RETENTION_DAYS"]) == (30, 0)
    for bad in ({"IP_RETENTION_DAYS": "0"}, {"IP_RETENTION_DAYS": "ninety"}, {"CLOSED_ACCOUNT_RETENTION_DAYS": "-1"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            load(str(tmp_path), bad)
