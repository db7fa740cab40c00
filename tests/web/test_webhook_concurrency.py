"""Stripe delivering at once, through the real waitress server: however many copies arrive together, one credit.

SQLite: BEGIN IMMEDIATE queues the writers; each later one finds the event id taken.
Postgres: the later INSERTs of the same event id wait for the first transaction, then fail on the
primary key, which the handler reads as "already handled" and answers 200. Two different events of
one session both lock its Payment row; the second finds it paid.
"""
import threading

import pytest
import requests
from sqlalchemy import func, select, text

from portal import ledger, payments
from portal.database import atomic
from portal.extensions import db
from portal.models import EntryKind, LedgerEntry, Payment, StripeEvent
from tests.conftest import stripe_settings
from tests.factories import make_user, open_checkout
from tests.fake_stripe import deliver

WORKERS = 8


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


def deliver_together(url: str, evts: list[dict]) -> list[int]:
    """POST each event from its own thread, all released at once; the status codes, in order."""
    barrier = threading.Barrier(len(evts))
    statuses: list = [None] * len(evts)

    def send(i):
        barrier.wait()
        try:
            statuses[i] = deliver(url, evts[i]).status_code
        except Exception as exc:  # asserted below
            statuses[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(evts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def topups(user) -> list[int]:
    db.session.rollback()
    return list(db.session.scalars(select(LedgerEntry.amount).where(LedgerEntry.account_id == user.account.id)))


def test_the_same_event_eight_times_at_once_credits_once(app, gateway, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, 3_000)
    fake_stripe.pay(session_id)
    evt = fake_stripe.session_event("checkout.session.completed", session_id)

    statuses = deliver_together(f"{gateway}/stripe/webhook", [evt] * WORKERS)

    assert statuses == [200] * WORKERS
    assert topups(user) == [30_000_000]
    assert db.session.scalar(select(func.count(StripeEvent.id))) == 1


@pytest.mark.parametrize("record", [True, False], ids=["payment row", "no payment row"])
def test_completed_and_async_succeeded_at_once_credit_once(app, gateway, fake_stripe, record):
    user = make_user()
    session_id = open_checkout(user, 1_500, record=record)
    fake_stripe.pay(session_id)
    completed = fake_stripe.session_event("checkout.session.completed", session_id)
    succeeded = fake_stripe.session_event("checkout.session.async_payment_succeeded", session_id)

    statuses = deliver_together(f"{gateway}/stripe/webhook", [completed, succeeded] * (WORKERS // 2))

    assert statuses == [200] * WORKERS
    assert topups(user) == [15_000_000]
    assert db.session.scalar(select(func.count(StripeEvent.id))) == 2
    assert db.session.scalar(select(func.count(Payment.id))) == 1
    assert db.session.scalar(select(Payment.status)) == "paid"


def wait_until_blocked(app) -> None:
    """Return once some transaction waits for a row lock (Postgres); SQLite's writers queue unseen."""
    if db.engine.dialect.name != "postgresql":
        return
    probe = threading.Event()
    with db.engine.connect() as conn:
        for _ in range(2_000):  # up to ~20 s: a deadline, not a timing assumption
            waiting = conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar()
            conn.rollback()
            if waiting:
                return
            probe.wait(0.01)
    raise AssertionError("the webhook never waited for the payment row")


def test_a_refund_event_during_an_operator_refund_waits_and_debits_nothing_more(app, fake_stripe):
    """refunds.py holds the payment row while it refunds through Stripe; Stripe's charge.refunded may
    arrive before that transaction commits. The webhook waits for the row and then finds nothing new."""
    user = make_user()
    session_id = open_checkout(user, 3_000)
    fake_stripe.pay(session_id)
    payments.handle_event(fake_stripe.session_event("checkout.session.completed", session_id))
    evt = fake_stripe.charge_refunded(session_id, 1_000)  # Stripe's side of the operator's refund
    locked, release = threading.Event(), threading.Event()
    outcome: list = []

    def operator():
        with app.app_context():
            try:
                with atomic():
                    payment = db.session.scalars(select(Payment).where(Payment.checkout_session_id == session_id)
                                                 .with_for_update()).one()
                    ledger.debit(user.account.id, 10_000_000, EntryKind.REFUND, memo="approved", reference="op:1")
                    locked.set()
                    release.wait(30)
                    payment.refunded += 10_000_000
            finally:
                db.session.remove()

    def webhook():
        with app.app_context():
            try:
                outcome.append(payments.handle_event(evt))
            except Exception as exc:  # asserted below
                outcome.append(exc)
            finally:
                db.session.remove()

    first = threading.Thread(target=operator)
    first.start()
    assert locked.wait(30)
    second = threading.Thread(target=webhook)
    second.start()
    wait_until_blocked(app)
    release.set()
    first.join()
    second.join()

    assert outcome and str(outcome[0]).startswith("nothing new"), outcome
    assert topups(user) == [30_000_000, -10_000_000]


def test_paying_on_the_hosted_page_credits_through_the_webhook(app, gateway, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, 2_000)
    fake_stripe.webhook_url = f"{gateway}/stripe/webhook"

    page = requests.get(f"{fake_stripe.url}/pay/{session_id}", allow_redirects=False, timeout=60)

    assert page.status_code == 303  # the fake delivered checkout.session.completed before redirecting
    assert topups(user) == [20_000_000]
    db.session.rollback()
    assert db.session.scalar(select(Payment.status)) == "paid"
