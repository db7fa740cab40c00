"""`credits topup` (money paid in by hand) and `users show` (what the operator needs to know about a user)."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal import ledger, payments, refunds
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, AuditEntry, LedgerEntry, Payment, User, utcnow
from tests.factories import make_user
from tests.fake_stripe import event


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def refused(result, message):
    assert result.exit_code != 0
    assert message in result.output.strip().splitlines()[-1], result.output
    return result.output


def account_of(user) -> Account:
    db.session.rollback()
    return db.session.get(Account, user.account.id)


def test_topup_credits_a_paid_payment_and_moves_the_expiry(app, cli):
    user = make_user("t@example.com")
    before = utcnow()

    out = ok(cli("credits", "topup", "t@example.com", "25.50", "--reference", "BANK-2027-001"))

    account = account_of(user)
    assert account.balance == 25_500_000 and before <= account.last_topup_at <= utcnow()
    assert account.credits_expire_at == ledger.expiry_after(account.last_topup_at)
    assert "credited $25.50 to t@example.com" in out and f"valid until {account.credits_expire_at:%Y-%m-%d}" in out
    payment = db.session.scalar(select(Payment))
    assert (payment.source, payment.status, payment.amount, payment.reference, payment.method, payment.paid_at) == \
        ("manual", "paid", 25_500_000, "BANK-2027-001", "bank transfer", account.last_topup_at)
    entry = db.session.scalar(select(LedgerEntry))
    assert (entry.kind, entry.amount, entry.reference) == ("topup", 25_500_000, "manual:BANK-2027-001")


def test_topup_again_with_the_same_reference_credits_once(app, cli):
    user = make_user("t@example.com")
    ok(cli("credits", "topup", "t@example.com", "10", "--reference", "R-1", "--method", "cash"))
    out = ok(cli("credits", "topup", "t@example.com", "10", "--reference", "R-1", "--method", "cash"))
    assert "already recorded" in out and "nothing credited" in out
    assert account_of(user).balance == 10_000_000
    assert db.session.scalar(select(func.count(Payment.id))) == 1
    assert db.session.scalar(select(Payment.method)) == "cash"
    # Audited once, as the operator at the command line; the repeat changed nothing.
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "credits.topup")).all()
    assert entry.actor.startswith("cli:") and entry.target_id == str(user.id)
    assert (entry.after["amount"], entry.after["reference"]) == (10_000_000, "R-1")


@pytest.mark.parametrize("args, message", [
    (["t@example.com", "10", "--reference", "R-1"], "already used for $20.00"),
    (["t@example.com", "0.001", "--reference", "R-2"], "whole number of cents"),
    (["t@example.com", "0", "--reference", "R-2"], "whole number of cents"),
    (["t@example.com", "abc", "--reference", "R-2"], "must be a non-negative decimal"),
    (["t@example.com", "10", "--reference", "  "], "needs a --reference"),
    (["t@example.com", "10"], "Missing option '--reference'"),
    (["nobody@example.com", "10", "--reference", "R-2"], "no user with email"),
])
def test_topup_refuses_bad_input(app, cli, args, message):
    user = make_user("t@example.com")
    ok(cli("credits", "topup", "t@example.com", "20", "--reference", "R-1"))
    refused(cli("credits", "topup", *args), message)
    assert account_of(user).balance == 20_000_000
    assert db.session.scalar(select(func.count(Payment.id))) == 1


def test_grant_does_not_move_the_expiry_or_count_as_paid(app, cli):
    user = make_user("t@example.com")
    ok(cli("credits", "grant", "t@example.com", "5", "--reason", "goodwill"))
    account = account_of(user)
    assert (account.balance, account.last_topup_at, account.credits_expire_at) == (5_000_000, None, None)
    assert payments.paid_in_past_year(account.id) == (0, 0)
    assert "paid, past 12 months: $0.00" in ok(cli("users", "show", "t@example.com"))


def paid_by_stripe(user, cents, session_id="cs_test_show", intent="pi_test_show"):
    """A Checkout Session paid and credited through its event (no Stripe API configured: the event says it all)."""
    payments.handle_event(event("checkout.session.completed", {
        "id": session_id, "object": "checkout.session", "amount_total": cents, "currency": "usd",
        "payment_status": "paid", "status": "complete", "payment_intent": intent,
        "metadata": {"account_id": str(user.account.id), "user_id": str(user.id), "amount_cents": str(cents)}}))


def test_users_show_tells_the_operator_everything(app, cli):
    user = make_user("s@example.com")
    ok(cli("credits", "topup", "s@example.com", "40", "--reference", "R-9"))
    paid_by_stripe(user, 2_000)
    payments.handle_event(event("charge.refunded", {
        "id": "ch_test_show", "object": "charge", "amount": 2_000, "amount_refunded": 500, "currency": "usd",
        "payment_intent": "pi_test_show"}))
    payments.handle_event(event("charge.dispute.created", {
        "id": "dp_test_show", "object": "dispute", "amount": 2_000, "charge": "ch_test_show",
        "payment_intent": "pi_test_show", "currency": "usd", "reason": "fraudulent", "status": "needs_response"}))
    with atomic():
        ledger.hold(user.account.id, 3_000_000)
        refunds.request(db.session.get(User, user.id), "moving on")
    account = account_of(user)

    out = ok(cli("users", "show", "s@example.com"))

    # $40 + $20 paid; $5 refunded and $15 disputed of the $20.
    assert "status:        suspended (payment #2 is disputed" in out
    assert "balance:       $40.00" in out and "held:          $3.00" in out and "available:     $37.00" in out
    assert f"last top-up:   {account.last_topup_at:%Y-%m-%d %H:%M} UTC" in out
    assert f"expires:       {account.credits_expire_at:%Y-%m-%d %H:%M} UTC" in out
    assert "paid, past 12 months: $60.00 ($40.00 net of refunds and disputes)" in out
    assert "open refund request: #1 of" in out and "($40.00 at the time)" in out
    assert "dispute: payment #2 of $20.00: needs_response, $15.00 debited" in out
    flagged = [line for line in out.splitlines() if line.strip().startswith("flagged:")]
    assert len(flagged) == 1 and "charge.dispute.created" in flagged[0] and "dp_test_show" in flagged[0]


def test_inbox_payments_lists_what_is_flagged_across_users(app, cli):
    assert "nothing flagged" in ok(cli("inbox", "payments"))
    user = make_user("d@example.com")
    paid_by_stripe(user, 2_000)
    payments.handle_event(event("charge.dispute.created", {
        "id": "dp_test_inbox", "object": "dispute", "amount": 2_000, "charge": "ch_test_show",
        "payment_intent": "pi_test_show", "currency": "usd", "reason": "fraudulent", "status": "needs_response"}))
    payments.handle_event(event("checkout.session.completed", {
        "id": "cs_test_nobody", "object": "checkout.session", "payment_status": "paid", "amount_total": 500,
        "currency": "usd", "metadata": {"account_id": "999999"}}))
    payments.handle_event(event("customer.created", {"id": "cus_1", "object": "customer"}))  # not flagged

    lines = ok(cli("inbox", "payments")).splitlines()

    assert len([line for line in lines if not line.startswith("  ")]) == 2
    assert any("charge.dispute.created" in line and "d@example.com" in line for line in lines)
    assert any("checkout.session.completed" in line and "(no account)" in line for line in lines)
    assert any("unknown account" in line for line in lines)


def test_users_show_leaves_out_payments_older_than_twelve_months(app, cli):
    user = make_user("s@example.com")
    ok(cli("credits", "topup", "s@example.com", "40", "--reference", "R-old"))
    with atomic():
        db.session.scalar(select(Payment)).paid_at = utcnow() - timedelta(days=367)
    out = ok(cli("users", "show", "s@example.com"))
    assert "paid, past 12 months: $0.00 ($0.00 net" in out
    assert "open refund request: none" in out and "flagged:" not in out
    assert account_of(user).balance == 40_000_000


def test_users_show_unknown_user(app, cli):
    refused(cli("users", "show", "nobody@example.com"), "no user with email")
