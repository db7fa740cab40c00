"""`flask refunds list|approve|reject` and `flask refund-policy publish`."""
import pytest
from sqlalchemy import select

from portal import legal
from portal.extensions import db
from portal.models import LegalKind, RefundRequest
from tests.cli.helpers import ok, refused
from tests.conftest import stripe_settings
from tests.domain.test_refunds_approval import USD, ask, balance, grant, pay_by_card, pay_by_hand
from tests.factories import make_user
from tests.web.helpers import outbox


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


def status(request_id) -> str:
    db.session.rollback()
    return db.session.get(RefundRequest, request_id).status


def test_list_shows_open_requests_with_what_is_refundable(app, cli, fake_stripe):
    assert "no open refund requests" in ok(cli("refunds", "list"))
    user = make_user("ada@example.com")
    pay_by_card(fake_stripe, user, 4 * USD)
    pay_by_hand(user, 2 * USD)
    grant(user, 1 * USD)
    request_id = ask(user, close_account=True)
    out = ok(cli("refunds", "list"))
    assert f"#{request_id} " in out and "ada@example.com [requested] balance when asked $7.00" in out
    assert "refundable now $6.00 ($2.00 of it by hand); close the account when paid" in out
    assert "reason: leaving" in out


def test_list_escapes_what_users_wrote(app, cli):
    from portal import refunds
    from portal.database import atomic
    from portal.models import User
    user = make_user(credit=USD)
    with atomic():
        refunds.request(db.session.get(User, user.id), "fine\x1b[2J\u202eevil")
    out = ok(cli("refunds", "list"))
    assert "\x1b" not in out and "\u202e" not in out and "fine\\x1b[2J\\u202eevil" in out


def test_approve_refunds_and_reports(app, cli, fake_stripe):
    user = make_user()
    pay_by_card(fake_stripe, user, 3 * USD, days_ago=3)
    pay_by_hand(user, 2 * USD, reference="wire-9")
    request_id = ask(user)
    out = ok(cli("refunds", "approve", str(request_id)))
    assert "to pay back by hand: $2.00 of payment" in out and "bank transfer, wire-9" in out
    assert "refunded $3.00 of payment" in out and "through Stripe (re_test_" in out
    assert f"refund request {request_id} paid: $5.00 in all" in out and "mailed person@example.com" in out
    assert status(request_id) == "paid" and balance(user) == 0
    refused(cli("refunds", "approve", str(request_id)), f"refund request {request_id} is paid, not open")
    assert len(fake_stripe.refunds) == 1
    refused(cli("refunds", "approve", "999"), "there is no refund request 999")


def test_approve_says_when_stripe_failed_and_a_retry_continues(app, cli, fake_stripe):
    user = make_user()
    pay_by_card(fake_stripe, user, 3 * USD)
    request_id = ask(user)
    fake_stripe.fail_refunds = True
    out = refused(cli("refunds", "approve", str(request_id)), f"refund request {request_id} is still open")
    assert "This charge cannot be refunded right now." in out and "Run the approval again" in out
    assert status(request_id) == "requested" and balance(user) == 3 * USD
    fake_stripe.fail_refunds = False
    assert "paid: $3.00 in all" in ok(cli("refunds", "approve", str(request_id)))
    assert len(fake_stripe.refunds) == 1


def test_approve_with_nothing_refundable_closes_it_at_zero(app, cli):
    user = make_user(credit=2 * USD)
    request_id = ask(user)
    assert "closed as paid with $0.00: nothing refundable" in ok(cli("refunds", "approve", str(request_id)))


def test_approve_closes_the_account_when_asked(app, cli, fake_stripe):
    user = make_user()
    pay_by_card(fake_stripe, user, 1 * USD)
    request_id = ask(user, close_account=True)
    assert "the account is closed, as the person asked" in ok(cli("refunds", "approve", str(request_id)))


def test_reject_needs_a_reason_and_mails_it(app, cli):
    user = make_user(credit=USD)
    request_id = ask(user)
    refused(cli("refunds", "reject", str(request_id)), "Missing option '--reason'")
    refused(cli("refunds", "reject", str(request_id), "--reason", " "), "give the reason")
    out = ok(cli("refunds", "reject", str(request_id), "--reason", "Bought with a stolen card."))
    assert f"refund request {request_id} refused; mailed person@example.com" in out
    assert status(request_id) == "refused"
    assert "Bought with a stolen card." in outbox(app)[-1].get_content()
    assert "[refused]" in ok(cli("refunds", "list", "--all"))
    assert "no open refund requests" in ok(cli("refunds", "list"))


def test_refund_policy_publish(app, cli, tmp_path):
    policy = tmp_path / "refunds.md"
    policy.write_text("# Refunds\n\nUnspent top-ups come back.", encoding="utf-8")
    assert "published refunds version 2026-11" in ok(cli("refund-policy", "publish", str(policy),
                                                        "--version", "2026-11"))
    refused(cli("refund-policy", "publish", str(policy), "--version", "2026-11"), "already published")
    db.session.rollback()
    assert legal.current(LegalKind.REFUND_POLICY).body.startswith("# Refunds")
    assert db.session.scalar(select(db.func.count()).select_from(RefundRequest)) == 0
