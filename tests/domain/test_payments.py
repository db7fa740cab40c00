"""Stripe events and manual top-ups through payments.py: each money effect once, and only the new part."""
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import ledger, payments, stripe_gateway
from portal.database import atomic
from portal.errors import InsufficientFunds, InvalidAmount, InvalidInput, ReferenceConflict
from portal.extensions import db
from portal.models import (Account, EntryKind, LedgerEntry, Payment, StripeEvent, User,
                           utcnow)
from portal.stripe_gateway import StripeUnavailable
from tests.conftest import stripe_settings
from tests.factories import make_user, open_checkout
from tests.fake_stripe import event
from tests.web.helpers import outbox


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


def paid(fake, user, cents=2_000, method="card") -> str:
    """A session paid and credited through its completed event."""
    session_id = open_checkout(user, cents)
    fake.pay(session_id, method)
    payments.handle_event(fake.session_event("checkout.session.completed", session_id))
    return session_id


def fresh_account(user) -> Account:
    db.session.rollback()
    return db.session.get(Account, user.account.id)


def entries(user) -> list[tuple[str, int]]:
    db.session.rollback()
    return [(e.kind, e.amount) for e in db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.account_id == user.account.id).order_by(LedgerEntry.id))]


def payment_of(session_id) -> Payment:
    db.session.rollback()
    return db.session.scalar(select(Payment).where(Payment.checkout_session_id == session_id))


def recorded(event_id) -> StripeEvent:
    db.session.rollback()
    return db.session.get(StripeEvent, event_id)


def mail_to(app, user) -> list:
    return [m for m in outbox(app) if m["To"] == user.email]


# -- paid sessions ----------------------------------------------------------------------------

def test_paid_session_credits_once_and_moves_the_expiry(app, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, 2_500)
    fake_stripe.pay(session_id, "alipay")
    evt = fake_stripe.session_event("checkout.session.completed", session_id)
    before = utcnow()

    outcome = payments.handle_event(evt)
    again = payments.handle_event(evt)

    assert outcome.startswith("credited $25.00") and again == payments.DUPLICATE
    assert entries(user) == [("topup", 25_000_000)]
    account = fresh_account(user)
    assert account.balance == 25_000_000 and before <= account.last_topup_at <= utcnow()
    assert account.credits_expire_at == ledger.expiry_after(account.last_topup_at)
    payment = payment_of(session_id)
    charge = fake_stripe.charge_of(session_id)
    assert (payment.status, payment.paid_at, payment.amount) == ("paid", account.last_topup_at, 25_000_000)
    assert (payment.payment_intent_id, payment.charge_id, payment.method) == \
        (charge["payment_intent"], charge["id"], "alipay")
    assert payment.receipt_url == charge["receipt_url"] and payment.invoice_url.startswith("https://invoice.stripe.com/")
    row = recorded(evt["id"])
    assert (row.type, row.account_id, row.flagged) == ("checkout.session.completed", user.account.id, False)
    [message] = mail_to(app, user)
    body = message.get_content()
    assert "$25.00 has arrived" in message["Subject"] and charge["receipt_url"] in body
    assert f"valid until {account.credits_expire_at:%Y-%m-%d}" in body and "http://localhost/billing/" in body


def test_completed_and_async_succeeded_for_one_session_credit_once(app, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, 1_000)
    fake_stripe.pay(session_id)
    first = fake_stripe.session_event("checkout.session.completed", session_id)
    second = fake_stripe.session_event("checkout.session.async_payment_succeeded", session_id)

    payments.handle_event(first)
    outcome = payments.handle_event(second)

    assert outcome.startswith("already credited")
    assert entries(user) == [("topup", 10_000_000)]
    assert recorded(first["id"]) and recorded(second["id"])
    assert len(mail_to(app, user)) == 1


def test_delayed_method_stays_pending_until_it_succeeds(app, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, 1_000)
    fake_stripe.pay(session_id, "us_bank_account", paid=False)

    outcome = payments.handle_event(fake_stripe.session_event("checkout.session.completed", session_id))

    assert outcome.startswith("pending") and entries(user) == []
    assert payment_of(session_id).status == "pending" and fresh_account(user).last_topup_at is None
    [pending] = mail_to(app, user)  # told at once that the money is on its way, not yet credited
    assert pending["Subject"] == "Your top-up of $10.00 is on its way"

    fake_stripe.pay(session_id, "us_bank_account")
    payments.handle_event(fake_stripe.session_event("checkout.session.async_payment_succeeded", session_id))
    assert entries(user) == [("topup", 10_000_000)] and payment_of(session_id).status == "paid"
    assert len(mail_to(app, user)) == 2


def test_failed_payment_credits_nothing_and_tells_the_user(app, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, 1_000)
    fake_stripe.pay(session_id, "us_bank_account", paid=False)
    payments.handle_event(fake_stripe.session_event("checkout.session.completed", session_id))

    outcome = payments.handle_event(fake_stripe.session_event("checkout.session.async_payment_failed", session_id))

    assert outcome.startswith("failed") and entries(user) == []
    payment = payment_of(session_id)
    assert (payment.status, payment.failure) == ("failed", "the payment failed")
    mails = mail_to(app, user)  # "on its way" when it completed, then this (files of one second sort by chance)
    assert sorted("on its way" in m["Subject"] for m in mails) == [False, True]
    [message] = [m for m in mails if "on its way" not in m["Subject"]]
    assert "did not go through" in message["Subject"] and "Nothing was credited" in message.get_content()


def test_expired_session_is_marked_failed_without_mail(app, fake_stripe):
    user = make_user()
    session_id = open_checkout(user)
    payments.handle_event(fake_stripe.session_event("checkout.session.expired", session_id))
    assert payment_of(session_id).status == "failed" and entries(user) == [] and mail_to(app, user) == []


def test_a_session_without_its_payment_row_is_credited_from_its_metadata(app, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, 700, record=False)
    fake_stripe.pay(session_id)
    payments.handle_event(fake_stripe.session_event("checkout.session.completed", session_id))
    payments.handle_event(fake_stripe.session_event("checkout.session.async_payment_succeeded", session_id))
    assert entries(user) == [("topup", 7_000_000)]
    payment = payment_of(session_id)
    assert (payment.account_id, payment.amount, payment.status, payment.source) == \
        (user.account.id, 7_000_000, "paid", "stripe")


def test_stripe_says_what_was_paid(app, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, 1_000)
    fake_stripe.sessions[session_id]["amount_total"] = 900  # a discount applied at Checkout, say
    fake_stripe.pay(session_id)
    evt = fake_stripe.session_event("checkout.session.completed", session_id)
    payments.handle_event(evt)
    assert entries(user) == [("topup", 9_000_000)] and payment_of(session_id).amount == 9_000_000
    assert recorded(evt["id"]).flagged


@pytest.mark.parametrize("change, expected", [
    ({"metadata": {"account_id": "999999"}}, "unknown account"),
    ({"metadata": {"account_id": "not a number"}}, "unknown account"),
    ({"metadata": {}}, "unknown account"),
    ({"currency": "eur"}, "not a positive USD amount"),
    ({"amount_total": 0}, "not a positive USD amount"),
    ({"amount_total": "1000"}, "not a positive USD amount"),
])
def test_a_paid_session_that_cannot_be_credited_is_flagged(app, fake_stripe, change, expected):
    user = make_user()
    session_id = open_checkout(user, 1_000, record=False)
    fake_stripe.sessions[session_id].update(change)
    fake_stripe.pay(session_id)
    evt = fake_stripe.session_event("checkout.session.completed", session_id)

    outcome = payments.handle_event(evt)

    assert expected in outcome and "nothing credited" in outcome
    assert entries(user) == [] and payment_of(session_id) is None
    row = recorded(evt["id"])
    assert row.flagged and expected in row.outcome
    assert mail_to(app, user) == []


def test_details_come_from_the_event_when_stripe_cannot_be_reached(app, fake_stripe, monkeypatch):
    user = make_user()
    session_id = open_checkout(user, 1_000)
    fake_stripe.pay(session_id)

    def unavailable(self, session_id):
        raise StripeUnavailable("Stripe could not complete the request")
    monkeypatch.setattr(stripe_gateway.StripeGateway, "payment_details", unavailable)
    payments.handle_event(fake_stripe.session_event("checkout.session.completed", session_id))

    payment = payment_of(session_id)
    assert payment.status == "paid" and entries(user) == [("topup", 10_000_000)]
    assert payment.payment_intent_id == fake_stripe.sessions[session_id]["payment_intent"]
    assert payment.receipt_url is None


@pytest.mark.parametrize("evt", [{}, {"id": "evt_1", "type": "x"}, {"id": 5, "type": "x", "data": {"object": {}}},
                                 {"id": "evt_1", "type": "x", "data": {"object": []}}, []])
def test_a_malformed_event_is_refused(app, evt):
    with pytest.raises(InvalidInput):
        payments.handle_event(evt)
    db.session.rollback()
    assert db.session.scalar(select(StripeEvent)) is None


def test_other_events_are_recorded_and_ignored(app):
    evt = event("customer.created", {"id": "cus_1", "object": "customer"})
    assert payments.handle_event(evt).startswith("ignored")
    row = recorded(evt["id"])
    assert (row.type, row.flagged, row.account_id) == ("customer.created", False, None)


def test_a_failure_while_applying_records_nothing_so_stripe_retries(app, fake_stripe, monkeypatch):
    user = make_user()
    session_id = open_checkout(user, 1_000)
    fake_stripe.pay(session_id)
    evt = fake_stripe.session_event("checkout.session.completed", session_id)
    real = ledger.credit

    def broken(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("the database went away")
    monkeypatch.setattr(ledger, "credit", broken)
    with pytest.raises(RuntimeError):
        payments.handle_event(evt)
    assert recorded(evt["id"]) is None and entries(user) == []

    monkeypatch.setattr(ledger, "credit", real)
    payments.handle_event(evt)
    assert entries(user) == [("topup", 10_000_000)]


# -- refunds made in Stripe -------------------------------------------------------------------

def test_partial_then_full_refund_debits_each_new_part(app, fake_stripe):
    user = make_user()
    session_id = paid(fake_stripe, user, 5_000)
    partial = fake_stripe.charge_refunded(session_id, 1_500)
    full = fake_stripe.charge_refunded(session_id)

    payments.handle_event(partial)
    payments.handle_event(partial)
    payments.handle_event(dict(partial, id="evt_test_redelivered_under_a_new_id"))
    payments.handle_event(full)

    assert entries(user) == [("topup", 50_000_000), ("refund", -15_000_000), ("refund", -35_000_000)]
    assert payment_of(session_id).refunded == 50_000_000 and fresh_account(user).balance == 0


def test_refund_events_out_of_order_debit_the_total_once(app, fake_stripe):
    user = make_user()
    session_id = paid(fake_stripe, user, 5_000)
    partial = fake_stripe.charge_refunded(session_id, 1_000)
    full = fake_stripe.charge_refunded(session_id)
    payments.handle_event(full)
    outcome = payments.handle_event(partial)
    assert outcome.startswith("nothing new")
    assert entries(user) == [("topup", 50_000_000), ("refund", -50_000_000)]


def test_refund_can_take_the_balance_negative_and_then_holds_are_refused(app, fake_stripe):
    user = make_user()
    session_id = paid(fake_stripe, user, 1_000)
    with atomic():
        hold = ledger.hold(user.account.id, 6_000_000)
        ledger.settle(hold, 6_000_000)  # $6 of the $10 spent
    payments.handle_event(fake_stripe.charge_refunded(session_id))
    assert fresh_account(user).balance == -6_000_000
    with pytest.raises(InsufficientFunds), atomic():
        ledger.hold(user.account.id, 0)


def test_a_refund_the_operator_already_debited_is_not_debited_again(app, fake_stripe):
    user = make_user()
    session_id = paid(fake_stripe, user, 3_000)
    # What refunds.py does: the Stripe refund, then the debit and Payment.refunded in one transaction.
    evt = fake_stripe.charge_refunded(session_id, 1_000)
    with atomic():
        payment = db.session.scalars(select(Payment).where(Payment.checkout_session_id == session_id)
                                     .with_for_update()).one()
        ledger.debit(user.account.id, 10_000_000, EntryKind.REFUND, memo="approved", reference="refund:1")
        payment.refunded += 10_000_000

    assert payments.handle_event(evt).startswith("nothing new")
    assert entries(user) == [("topup", 30_000_000), ("refund", -10_000_000)]


def test_a_refund_of_an_unknown_charge_is_flagged(app, fake_stripe):
    evt = event("charge.refunded", {"id": "ch_elsewhere", "object": "charge", "amount": 500, "amount_refunded": 500,
                                    "currency": "usd", "payment_intent": "pi_elsewhere"})
    assert "no payment matches" in payments.handle_event(evt)
    assert recorded(evt["id"]).flagged


# -- disputes ---------------------------------------------------------------------------------

def test_dispute_suspends_debits_once_and_flags(app, fake_stripe):
    user = make_user()
    session_id = paid(fake_stripe, user, 2_000)
    created = fake_stripe.dispute(session_id, dispute_id="dp_test_1")

    payments.handle_event(created)
    payments.handle_event(created)
    payments.handle_event(dict(created, id="evt_test_same_dispute_again"))

    assert entries(user) == [("topup", 20_000_000), ("dispute", -20_000_000)]
    payment = payment_of(session_id)
    assert (payment.disputed, payment.dispute_status) == (20_000_000, "needs_response")
    suspended = db.session.get(User, user.id)
    assert suspended.status == "suspended" and "dp_test_1" in suspended.status_reason
    row = recorded(created["id"])
    assert row.flagged and row.account_id == user.account.id and "dp_test_1" in row.outcome


def test_dispute_takes_only_what_was_not_refunded(app, fake_stripe):
    user = make_user()
    session_id = paid(fake_stripe, user, 2_000)
    payments.handle_event(fake_stripe.charge_refunded(session_id, 1_500))
    payments.handle_event(fake_stripe.dispute(session_id))  # disputes the whole $20
    assert entries(user) == [("topup", 20_000_000), ("refund", -15_000_000), ("dispute", -5_000_000)]
    payment = payment_of(session_id)
    assert payment.refunded + payment.disputed == payment.amount


@pytest.mark.parametrize("status", ["won", "lost"])
def test_closed_dispute_is_recorded_and_restores_nothing(app, fake_stripe, status):
    user = make_user()
    session_id = paid(fake_stripe, user, 2_000)
    payments.handle_event(fake_stripe.dispute(session_id, dispute_id="dp_test_2"))
    closed = fake_stripe.dispute(session_id, status, dispute_id="dp_test_2")

    payments.handle_event(closed)

    assert entries(user) == [("topup", 20_000_000), ("dispute", -20_000_000)]
    assert payment_of(session_id).dispute_status == status
    assert recorded(closed["id"]).flagged
    assert db.session.get(User, user.id).status == "suspended"


# -- manual top-ups and the 12-month figure ------------------------------------------------------

def test_manual_topup_credits_once_per_reference(app):
    user = make_user()
    for _ in range(2):
        with atomic():
            payment = payments.record_manual_topup(db.session.get(User, user.id), 40_000_000, " TX-1 ", None)
    assert entries(user) == [("topup", 40_000_000)]
    assert (payment.source, payment.status, payment.reference, payment.method) == \
        ("manual", "paid", "TX-1", "bank transfer")
    account = fresh_account(user)
    assert account.credits_expire_at == ledger.expiry_after(account.last_topup_at)
    with pytest.raises(ReferenceConflict), atomic():
        payments.record_manual_topup(db.session.get(User, user.id), 50_000_000, "TX-1", "cash")


@pytest.mark.parametrize("amount, reference, error", [
    (0, "TX", InvalidAmount), (1_234_567, "TX", InvalidAmount), (-10_000, "TX", InvalidAmount),
    (10_000, "  ", InvalidInput),
])
def test_manual_topup_refuses_bad_input(app, amount, reference, error):
    user = make_user()
    with pytest.raises(error), atomic():
        payments.record_manual_topup(db.session.get(User, user.id), amount, reference, None)
    assert entries(user) == []


def test_paid_in_past_year_counts_paid_payments_within_twelve_calendar_months(app, fake_stripe):
    user = make_user()
    other = make_user("other@example.com")
    now = datetime(2027, 3, 31, 12, tzinfo=timezone.utc)
    with atomic():
        for amount, paid_at, status, refunded, account in [
            (10_000_000, datetime(2026, 3, 31, 12, tzinfo=timezone.utc), "paid", 0, user),   # exactly 12 months
            (20_000_000, datetime(2026, 3, 31, 11, tzinfo=timezone.utc), "paid", 0, user),   # just before
            (30_000_000, datetime(2027, 1, 5, tzinfo=timezone.utc), "paid", 5_000_000, user),
            (40_000_000, None, "pending", 0, user),
            (50_000_000, datetime(2027, 2, 1, tzinfo=timezone.utc), "paid", 0, other),
            (60_000_000, now + timedelta(days=1), "paid", 0, user),                           # after `now`
        ]:
            db.session.add(Payment(account_id=account.account.id, source="manual", status=status, amount=amount,
                                   reference=uuid.uuid4().hex, paid_at=paid_at, refunded=refunded))
    assert payments.paid_in_past_year(user.account.id, now) == (40_000_000, 35_000_000)
    assert payments.paid_in_past_year(other.account.id, now) == (50_000_000, 50_000_000)
