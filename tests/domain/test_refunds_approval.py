"""Approving and refusing refund requests: what is refundable, Stripe refunds newest payment first,
by-hand shares, failures and retries, and the mail the person gets."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import apikeys, ledger, refunds
from portal.database import atomic
from portal.errors import InvalidInput, NotFound
from portal.extensions import db
from portal.models import (Account, EntryKind, LedgerEntry, Payment, RefundPayout, RefundRequest, User, UserStatus,
                           utcnow)
from tests.conftest import stripe_settings
from tests.fake_stripe import error, event
from tests.factories import make_user
from tests.web.helpers import outbox

USD = 1_000_000
CENT = 10_000


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


def pay_by_card(fake, user, amount, *, days_ago=0) -> str:
    """A paid Stripe top-up of `amount` micro-USD, known to the fake; returns its session id."""
    session = fake.create_session({"mode": "payment", "metadata": {"account_id": str(user.account.id)},
                                   "line_items": [{"quantity": 1, "price_data": {
                                       "currency": "usd", "unit_amount": amount // CENT}}]})
    fake.pay(session["id"])
    charge = fake.charge_of(session["id"])
    paid_at = utcnow() - timedelta(days=days_ago)
    with atomic():
        db.session.add(Payment(account_id=user.account.id, source="stripe", status="paid", amount=amount,
                               checkout_session_id=session["id"], payment_intent_id=charge["payment_intent"],
                               charge_id=charge["id"], method="card", paid_at=paid_at))
        ledger.credit(user.account.id, amount, EntryKind.TOPUP, memo="top-up",
                      reference=f"stripe:checkout:{session['id']}", topup_at=paid_at)
    return session["id"]


def pay_by_hand(user, amount, *, days_ago=0, reference="bank-1") -> None:
    paid_at = utcnow() - timedelta(days=days_ago)
    with atomic():
        db.session.add(Payment(account_id=user.account.id, source="manual", status="paid", amount=amount,
                               reference=reference, method="bank transfer", paid_at=paid_at))
        ledger.credit(user.account.id, amount, EntryKind.TOPUP, memo="bank transfer",
                      reference=f"manual:{reference}", topup_at=paid_at)


def grant(user, amount) -> None:
    with atomic():
        ledger.credit(user.account.id, amount, EntryKind.GRANT, memo="gift")


def spend(user, amount) -> None:
    with atomic():
        ledger.settle(ledger.hold(user.account.id, amount), amount)


def ask(user, *, close_account=False) -> int:
    with atomic():
        return refunds.request(db.session.get(User, user.id), "leaving", close_account=close_account).id


def balance(user) -> int:
    db.session.rollback()
    return db.session.get(Account, user.account.id).balance


def payments(user) -> list[Payment]:
    db.session.rollback()
    return list(db.session.scalars(select(Payment).where(Payment.account_id == user.account.id)
                                   .order_by(Payment.id)))


def stripe_refunds(fake) -> dict[str, int]:
    """Cents refunded at the fake, by payment intent."""
    out: dict[str, int] = {}
    for refund in fake.refunds.values():
        out[refund["payment_intent"]] = out.get(refund["payment_intent"], 0) + refund["amount"]
    return out


def intent(fake, session_id) -> str:
    return fake.sessions[session_id]["payment_intent"]


def test_refunds_newest_payment_first_across_two(app, fake_stripe):
    user = make_user()
    older = pay_by_card(fake_stripe, user, 10 * USD, days_ago=20)
    newer = pay_by_card(fake_stripe, user, 5 * USD, days_ago=2)
    spend(user, 3 * USD)  # $12 left: $5 from the newer payment, $7 from the older
    request_id = ask(user)
    result = refunds.approve(request_id)
    assert result.done
    assert [(p.amount, p.by_hand) for p in result.payouts] == [(5 * USD, False), (7 * USD, False)]
    assert stripe_refunds(fake_stripe) == {intent(fake_stripe, newer): 500, intent(fake_stripe, older): 700}
    assert balance(user) == 0
    assert [p.refunded for p in payments(user)] == [7 * USD, 5 * USD]
    refund = db.session.get(RefundRequest, request_id)
    assert (refund.status, refund.amount_refunded) == ("paid", 12 * USD) and refund.resolved_at is not None
    # Each debit names its Stripe refund, and each refund is a payout row.
    references = set(db.session.scalars(select(LedgerEntry.reference).where(LedgerEntry.kind == "refund")))
    assert references == {f"stripe:refund:{rid}" for rid in fake_stripe.refunds}
    assert set(db.session.scalars(select(RefundPayout.stripe_refund_id))) == set(fake_stripe.refunds)
    # The refunds carry the request's id and the per-payment idempotency keys.
    keys = {r["headers"].get("Idempotency-Key") for r in fake_stripe.requests if r["path"] == "/v1/refunds"}
    assert keys == {f"refund-request-{request_id}-payment-{p.id}" for p in payments(user)}
    assert all(r["metadata"] == {"refund_request": str(request_id)} for r in fake_stripe.refunds.values())


def test_grants_are_not_refunded_and_never_more_than_paid(app, fake_stripe):
    user = make_user()
    session = pay_by_card(fake_stripe, user, 10 * USD)
    grant(user, 5 * USD)  # $15 on the account, nothing spent
    db.session.rollback()
    assert refunds.refundable(db.session.get(Account, user.account.id)).amount == 10 * USD
    assert refunds.approve(ask(user)).done
    assert stripe_refunds(fake_stripe) == {intent(fake_stripe, session): 1000}
    assert balance(user) == 5 * USD  # the grant stays


def test_spent_money_reduces_the_refund(app, fake_stripe):
    user = make_user()
    grant(user, 2 * USD)
    session = pay_by_card(fake_stripe, user, 10 * USD)
    spend(user, 8 * USD)  # $4 left: the $2 grant counts as spent first, so $4 is paid money
    refunds.approve(ask(user))
    assert stripe_refunds(fake_stripe) == {intent(fake_stripe, session): 400}
    assert balance(user) == 0


def test_a_manual_top_up_is_paid_back_by_hand_without_stripe(app, fake_stripe):
    user = make_user()
    card = pay_by_card(fake_stripe, user, 4 * USD, days_ago=10)
    pay_by_hand(user, 6 * USD, days_ago=1, reference="wire-77")
    spend(user, 1 * USD)  # $9 left: $6 by hand (newest), $3 by card
    request_id = ask(user)
    result = refunds.approve(request_id)
    assert [(p.amount, p.by_hand) for p in result.payouts] == [(6 * USD, True), (3 * USD, False)]
    assert stripe_refunds(fake_stripe) == {intent(fake_stripe, card): 300}
    by_hand = db.session.scalar(select(RefundPayout).where(RefundPayout.by_hand.is_(True)))
    assert (by_hand.amount, by_hand.stripe_refund_id) == (6 * USD, None)
    assert db.session.scalar(select(LedgerEntry.amount).where(
        LedgerEntry.reference == f"refund-by-hand:{request_id}:{by_hand.payment_id}")) == -6 * USD
    assert balance(user) == 0
    body = outbox(app)[-1].get_content()
    assert "$3.00 to your card payment of $4.00" in body
    assert "$6.00 of your bank transfer top-up of $6.00" in body and "5 to 10 business days" in body


def test_manual_only_needs_no_stripe_at_all(app, fake_stripe):
    user = make_user()
    pay_by_hand(user, 2 * USD)
    app.extensions["stripe_gateway"] = None  # Stripe not configured
    assert refunds.approve(ask(user)).done
    assert balance(user) == 0 and fake_stripe.refunds == {}


def test_sub_cent_remainders_stay(app, fake_stripe):
    user = make_user()
    session = pay_by_card(fake_stripe, user, 10 * USD)
    spend(user, 3_000)  # $0.003 spent: $9.997 left
    refunds.approve(ask(user))
    assert stripe_refunds(fake_stripe) == {intent(fake_stripe, session): 999}
    assert balance(user) == 7_000


def test_stripe_failure_midway_then_retry_refunds_each_payment_once(app, fake_stripe, monkeypatch):
    user = make_user()
    older = pay_by_card(fake_stripe, user, 3 * USD, days_ago=5)
    newer = pay_by_card(fake_stripe, user, 2 * USD, days_ago=1)
    request_id = ask(user)
    real, failing = fake_stripe.refund, {intent(fake_stripe, older)}

    def refund(params):
        if params.get("payment_intent") in failing:
            return 400, error("This charge cannot be refunded right now.", code="charge_not_refundable")
        return real(params)
    monkeypatch.setattr(fake_stripe, "refund", refund)

    first = refunds.approve(request_id)
    assert not first.done and "cannot be refunded right now" in first.stopped
    assert [p.amount for p in first.payouts] == [2 * USD]  # the newer payment's refund stands
    db.session.rollback()
    refund = db.session.get(RefundRequest, request_id)
    assert (refund.status, refund.amount_refunded) == ("requested", 2 * USD)
    assert "Run the approval again" in refund.decision_reason
    assert balance(user) == 3 * USD
    assert outbox(app) == []  # nothing told yet: it is not done

    failing.clear()
    second = refunds.approve(request_id)
    assert second.done and [p.amount for p in second.payouts] == [3 * USD]
    assert stripe_refunds(fake_stripe) == {intent(fake_stripe, newer): 200, intent(fake_stripe, older): 300}
    assert len(fake_stripe.refunds) == 2
    db.session.rollback()
    refund = db.session.get(RefundRequest, request_id)
    assert (refund.status, refund.amount_refunded, refund.decision_reason) == ("paid", 5 * USD, None)
    assert balance(user) == 0


def test_a_crash_after_stripe_refunded_is_retried_without_a_second_refund(app, fake_stripe, monkeypatch):
    """Stripe refunded, then our transaction failed: the retry gets the same refund back (idempotency key)."""
    user = make_user()
    session = pay_by_card(fake_stripe, user, 4 * USD)
    request_id = ask(user)
    real_debit = ledger.debit

    def crash(*args, **kwargs):
        raise RuntimeError("the process died here")
    monkeypatch.setattr(refunds.ledger, "debit", crash)
    with pytest.raises(RuntimeError):
        refunds.approve(request_id)
    assert balance(user) == 4 * USD and len(fake_stripe.refunds) == 1

    monkeypatch.setattr(refunds.ledger, "debit", real_debit)
    assert refunds.approve(request_id).done
    assert len(fake_stripe.refunds) == 1
    assert stripe_refunds(fake_stripe) == {intent(fake_stripe, session): 400}
    assert balance(user) == 0


def test_a_request_is_approved_once(app, fake_stripe):
    user = make_user()
    pay_by_card(fake_stripe, user, 1 * USD)
    request_id = ask(user)
    refunds.approve(request_id)
    with pytest.raises(InvalidInput, match="is paid, not open"):
        refunds.approve(request_id)
    with pytest.raises(InvalidInput, match="is paid, not open"):
        refunds.reject(request_id, "too late")
    with pytest.raises(NotFound):
        refunds.approve(request_id + 100)
    assert len(fake_stripe.refunds) == 1


def test_reject_mails_the_reason_and_moves_no_money(app, fake_stripe):
    user = make_user()
    pay_by_card(fake_stripe, user, 5 * USD)
    request_id = ask(user)
    entries_before = db.session.scalar(select(db.func.count(LedgerEntry.id)))
    with pytest.raises(InvalidInput, match="reason"):
        refunds.reject(request_id, "  ")
    refunds.reject(request_id, "The balance was used for abuse.")
    db.session.rollback()
    refund = db.session.get(RefundRequest, request_id)
    assert (refund.status, refund.decision_reason) == ("refused", "The balance was used for abuse.")
    assert db.session.scalar(select(db.func.count(LedgerEntry.id))) == entries_before
    assert balance(user) == 5 * USD and fake_stripe.refunds == {}
    message = outbox(app)[-1]
    assert message["To"] == "person@example.com" and "declined" in message["Subject"]
    assert "The balance was used for abuse." in message.get_content()


def test_close_account_terminates_once_refunded(app, fake_stripe):
    user = make_user()
    pay_by_card(fake_stripe, user, 5 * USD)
    with atomic():
        apikeys.issue(db.session.get(User, user.id), "k")
    request_id = ask(user, close_account=True)
    result = refunds.approve(request_id)
    assert result.closed_account
    db.session.rollback()
    closed = db.session.get(User, user.id)
    assert closed.status == UserStatus.TERMINATED.value and closed.password_hash is None
    assert closed.email == f"closed-{user.id}@invalid"
    assert all(k.revoked_at is not None for k in apikeys.list_for(closed))
    message = outbox(app)[-1]
    assert message["To"] == "person@example.com"  # the address kept on the request
    assert "$5.00" in message["Subject"] and "Your account is closed, as you asked." in message.get_content()


def test_without_close_account_the_user_stays(app, fake_stripe):
    user = make_user()
    pay_by_card(fake_stripe, user, 5 * USD)
    refunds.approve(ask(user))
    db.session.rollback()
    assert db.session.get(User, user.id).status == UserStatus.ACTIVE.value
    assert "Your account is closed" not in outbox(app)[-1].get_content()


def test_asking_to_leave_marks_an_earlier_open_request(app):
    user = make_user(credit=USD)
    first = ask(user)
    assert ask(user, close_account=True) == first
    assert ask(user) == first
    db.session.rollback()
    assert db.session.get(RefundRequest, first).close_account is True


def test_expired_credits_refund_nothing(app, fake_stripe):
    user = make_user()
    pay_by_card(fake_stripe, user, 5 * USD, days_ago=400)  # credits expired 35 days ago
    request_id = ask(user)
    result = refunds.approve(request_id)
    assert result.done and result.payouts == [] and fake_stripe.refunds == {}
    db.session.rollback()
    refund = db.session.get(RefundRequest, request_id)
    assert (refund.status, refund.amount_refunded, refund.decision_reason) == ("paid", 0, "credits expired")
    assert balance(user) == 5 * USD  # the expiry job writes it off, not the refund
    assert "your credits had expired" in outbox(app)[-1].get_content()


def test_an_old_payment_counts_while_the_credits_are_unexpired(app, fake_stripe):
    user = make_user()
    old = pay_by_card(fake_stripe, user, 5 * USD, days_ago=400)
    pay_by_card(fake_stripe, user, 1 * USD, days_ago=1)  # renews the credits' validity
    refunds.approve(ask(user))
    assert stripe_refunds(fake_stripe)[intent(fake_stripe, old)] == 500
    assert balance(user) == 0


def test_grants_only_closes_the_request_with_nothing_refunded(app, fake_stripe):
    user = make_user(credit=3 * USD)
    request_id = ask(user)
    assert refunds.approve(request_id).done
    db.session.rollback()
    assert db.session.get(RefundRequest, request_id).decision_reason == "nothing refundable"
    assert balance(user) == 3 * USD
    assert "nothing on your account was refundable" in outbox(app)[-1].get_content()


def test_money_already_returned_by_a_dispute_is_not_refunded_again(app, fake_stripe):
    user = make_user()
    pay_by_card(fake_stripe, user, 5 * USD)
    grant(user, 5 * USD)
    with atomic():
        payment = db.session.scalar(select(Payment))
        payment.disputed = 3 * USD  # (the dispute's claw-back is the webhook's; only the payment matters here)
    refunds.approve(ask(user))
    assert sum(stripe_refunds(fake_stripe).values()) == 200


def test_cancelling_after_approval_started_paying_is_refused(app, fake_stripe, monkeypatch):
    user = make_user()
    older = pay_by_card(fake_stripe, user, 3 * USD, days_ago=5)
    pay_by_card(fake_stripe, user, 2 * USD, days_ago=1)
    request_id = ask(user)
    real = fake_stripe.refund
    monkeypatch.setattr(fake_stripe, "refund", lambda params: (400, error("No.")) if params.get(
        "payment_intent") == intent(fake_stripe, older) else real(params))
    assert not refunds.approve(request_id).done  # $2 refunded, then Stripe refused
    with atomic():
        assert refunds.cancel_open(db.session.get(User, user.id)) is None
    db.session.rollback()
    assert db.session.get(RefundRequest, request_id).status == "requested"


def test_listing_shows_open_requests_first_with_what_is_refundable(app, fake_stripe):
    paid = make_user("paid@example.com")
    pay_by_card(fake_stripe, paid, 1 * USD)
    refunds.approve(ask(paid))
    waiting = make_user("waiting@example.com")
    pay_by_card(fake_stripe, waiting, 4 * USD)
    pay_by_hand(waiting, 2 * USD)
    grant(waiting, 1 * USD)
    ask(waiting)
    db.session.rollback()
    rows = refunds.listing()
    assert [(r.request.contact_email, r.refundable.amount, r.refundable.by_hand) for r in rows] == \
        [("waiting@example.com", 6 * USD, 2 * USD)]
    everything = refunds.listing(include_closed=True)
    assert [r.request.contact_email for r in everything] == ["waiting@example.com", "paid@example.com"]


def test_a_later_charge_refunded_event_takes_nothing_more(app, fake_stripe):
    payments_module = pytest.importorskip("portal.payments")
    user = make_user()
    session = pay_by_card(fake_stripe, user, 5 * USD)
    grant(user, 1 * USD)
    refunds.approve(ask(user))
    assert balance(user) == 1 * USD
    charge = fake_stripe.charge_of(session)
    assert charge["amount_refunded"] == 500  # the fake's charge reflects our refund
    assert payments_module.handle_event(event("charge.refunded", charge)).startswith("nothing new")
    assert balance(user) == 1 * USD
    assert payments(user)[0].refunded == 5 * USD

