"""Automatic top-up: a saved card charged off-session when a call leaves the balance low, once an hour,
within the monthly ceiling; credited only by the webhook; a refused card turns it off and mails."""
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import apikeys, autotopup, calls, catalog, payments, topups
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, LedgerEntry, Payment
from portal.pricing import Price, Usage
from tests.conftest import stripe_settings
from tests.factories import make_user
from tests.fake_stripe import parse_form
from tests.web.helpers import outbox

OWNER = "owner@example.com"
PRICE = Price(input=1_000_000, output=2_000_000)
CALL = Usage(output=1_000_000)  # $2.00 a call
MID_MONTH = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


def save_card(fake, user, cents=1_000) -> str:
    """A Checkout top-up with "save my card" ticked, paid and credited through its webhook event."""
    checkout = topups.start_checkout(user, cents * 10_000, success_url="http://localhost/s",
                                     cancel_url="http://localhost/c", save_card=True)
    fake.pay(checkout.id)
    payments.handle_event(fake.session_event("checkout.session.completed", checkout.id))
    return checkout.id


def account_of(account_id: int) -> Account:
    db.session.rollback()
    return db.session.get(Account, account_id)


def configure(account_id: int, *, enabled=True, threshold=15_000_000, amount=20_000_000, limit=100_000_000):
    with atomic():
        autotopup.configure(db.session.get(Account, account_id), enabled=enabled, threshold=threshold,
                            amount=amount, monthly_limit=limit)


def auto_payments(account_id: int) -> list[Payment]:
    db.session.rollback()
    return list(db.session.scalars(select(Payment).where(Payment.account_id == account_id,
                                                         Payment.auto_topup.is_(True)).order_by(Payment.id)))


def entries(account_id: int) -> list[tuple[str, int, str]]:
    db.session.rollback()
    return [(e.kind, e.amount, e.reference) for e in db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id))]


def mail_to(app, subject_part: str) -> list:
    return [m for m in outbox(app) if m["To"] == OWNER and subject_part in m["Subject"]]


@pytest.fixture
def owner(app, fake_stripe) -> int:
    """The account of a user with $10 paid by a card saved for automatic top-ups."""
    user = make_user(OWNER)
    save_card(fake_stripe, user)
    return user.account.id


@pytest.fixture
def caller(owner):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("m", "echo", PRICE)
        _, plaintext = apikeys.issue(db.session.get(Account, owner).user, "k")
    return apikeys.authenticate(plaintext)


def charge(caller, usage=CALL) -> None:
    """One call that costs `usage`, settled; then wait for whatever it handed to the background sender."""
    call = calls.open_call(calls.new_request_id(), caller, catalog.serving_model("m"), usage,
                           calls.Bounds(input=10_000_000, output=10_000_000), client_ip=None, route="chat",
                           streamed=False)
    calls.close_call(call, calls.Outcome("ok", usage))
    from portal import notices
    notices.drain()


# -- saving the card -----------------------------------------------------------------------------

def test_a_checkout_with_save_card_stores_the_customer_and_card(app, fake_stripe, owner):
    [sent] = [parse_form(r["body"]) for r in fake_stripe.requests
              if r["method"] == "POST" and r["path"] == "/v1/checkout/sessions"]
    assert sent["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert sent["customer_creation"] == "always" and sent["payment_method_types"] == ["card"]
    assert sent["metadata"]["save_card"] == "true"
    account = account_of(owner)
    [card] = fake_stripe.payment_methods.values()
    assert account.stripe_customer_id == card["customer"] and account.stripe_customer_id.startswith("cus_")
    assert account.auto_topup_payment_method == card["id"] and account.auto_topup_card == "visa •••• 4242"
    assert account.auto_topup_enabled is False  # saving a card turns nothing on by itself

    # The next checkout reuses the customer instead of making another.
    topups.start_checkout(account_of(owner).user, 5_000_000, success_url="http://localhost/s", cancel_url="http://localhost/c",
                          save_card=True)
    last = parse_form(fake_stripe.requests[-1]["body"])
    assert last["customer"] == account.stripe_customer_id and "customer_email" not in last
    assert "customer_creation" not in last


def test_a_checkout_without_save_card_saves_nothing(app, fake_stripe):
    user = make_user(OWNER)
    checkout = topups.start_checkout(user, 5_000_000, success_url="http://localhost/s",
                                     cancel_url="http://localhost/c")
    sent = parse_form(fake_stripe.requests[-1]["body"])
    assert "setup_future_usage" not in sent["payment_intent_data"] and "customer_creation" not in sent
    fake_stripe.pay(checkout.id)
    payments.handle_event(fake_stripe.session_event("checkout.session.completed", checkout.id))
    account = account_of(user.account.id)
    assert (account.stripe_customer_id, account.auto_topup_payment_method) == (None, None)


# -- the trigger and the charge ------------------------------------------------------------------

def test_a_call_below_the_threshold_charges_the_card_once_and_the_webhook_credits_it(app, fake_stripe, caller, owner):
    configure(owner)                  # $15 threshold, $20 a time
    charge(caller)                    # $10 -> $8: below
    [sent] = fake_stripe.charges()
    account = account_of(owner)
    assert sent["amount"] == "2000" and sent["currency"] == "usd" and sent["confirm"] == "true"
    assert sent["off_session"] == "true" and sent["customer"] == account.stripe_customer_id
    assert sent["payment_method"] == account.auto_topup_payment_method
    [payment] = auto_payments(owner)
    assert sent["metadata"] == {"auto_topup": "true", "account_id": str(account.id), "payment_id": str(payment.id)}
    assert (payment.status, payment.amount) == ("pending", 20_000_000)
    [intent_id] = fake_stripe.intents
    assert payment.payment_intent_id == intent_id

    charge(caller)                    # $6: still low, but one charge is on its way
    assert len(fake_stripe.charges()) == 1

    evt = fake_stripe.intent_event("payment_intent.succeeded", intent_id)
    outcome = payments.handle_event(evt)
    assert payments.handle_event(evt) == payments.DUPLICATE
    assert outcome.startswith("credited $20.00")
    assert entries(owner)[-1] == ("topup", 20_000_000, f"stripe:payment_intent:{intent_id}")
    [payment] = auto_payments(owner)
    assert payment.status == "paid" and payment.paid_at is not None
    account = account_of(owner)
    assert account.balance == 26_000_000 and account.last_topup_at == payment.paid_at
    assert len(mail_to(app, "automatic top-up of $20.00 has arrived")) == 1


def test_the_same_intent_in_a_second_event_is_not_credited_twice(app, fake_stripe, owner):
    configure(owner)
    assert autotopup.attempt(owner).startswith("charged")
    [intent_id] = fake_stripe.intents
    payments.handle_event(fake_stripe.intent_event("payment_intent.succeeded", intent_id))
    again = payments.handle_event(fake_stripe.intent_event("payment_intent.succeeded", intent_id))  # a new event id
    assert again.startswith("already credited")
    assert [e for e in entries(owner) if e[0] == "topup"][-1][1] == 20_000_000
    assert len([e for e in entries(owner) if e[2] and e[2].startswith("stripe:payment_intent:")]) == 1


def test_a_checkout_sessions_payment_intent_event_is_not_credited_again(app, fake_stripe, owner):
    [session_id] = fake_stripe.sessions
    before = entries(owner)
    outcome = payments.handle_event(fake_stripe.session_intent_event(session_id))
    assert outcome.startswith("ignored") and entries(owner) == before == [
        ("topup", 10_000_000, f"stripe:checkout:{session_id}")]


def test_an_intent_claiming_to_be_someone_elses_auto_topup_credits_nothing(app, fake_stripe, owner):
    configure(owner)
    autotopup.attempt(owner)
    [intent_id] = fake_stripe.intents
    evt = fake_stripe.intent_event("payment_intent.succeeded", intent_id)
    evt["data"]["object"]["metadata"]["account_id"] = str(owner + 1)
    before = entries(owner)
    assert payments.handle_event(evt).startswith("flagged")
    assert entries(owner) == before and auto_payments(owner)[0].status == "pending"


def test_eight_attempts_at_once_charge_once(app, fake_stripe, owner):
    configure(owner)
    barrier = threading.Barrier(8)
    outcomes: list = [None] * 8

    def run(i):
        with app.app_context():
            barrier.wait()
            try:
                outcomes[i] = autotopup.attempt(owner)
            except Exception as exc:  # asserted below
                outcomes[i] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(o.split(":")[0] if isinstance(o, str) else repr(o) for o in outcomes) == ["charged"] + ["skipped"] * 7
    assert len(fake_stripe.charges()) == 1 and len(auto_payments(owner)) == 1


def test_at_most_one_attempt_an_hour(app, fake_stripe, owner):
    configure(owner)
    assert autotopup.attempt(owner, MID_MONTH).startswith("charged")
    assert autotopup.attempt(owner, MID_MONTH + timedelta(minutes=59)).startswith("skipped")
    assert len(fake_stripe.charges()) == 1
    assert autotopup.attempt(owner, MID_MONTH + timedelta(minutes=60)).startswith("charged")
    assert len(fake_stripe.charges()) == 2


def test_the_monthly_ceiling_stops_further_charges(app, fake_stripe, owner):
    configure(owner, amount=20_000_000, limit=50_000_000)
    hour = timedelta(hours=1)
    outcomes = [autotopup.attempt(owner, MID_MONTH + i * hour).split(":")[0] for i in range(3)]
    assert outcomes == ["charged", "charged", "skipped"]  # $40 so far; $60 would pass $50
    assert autotopup.charged_this_month(owner, MID_MONTH) == 40_000_000
    assert autotopup.attempt(owner, datetime(2026, 12, 1, tzinfo=timezone.utc)).startswith("charged")
    assert len(fake_stripe.charges()) == 3


def test_nothing_happens_when_it_is_off_or_the_balance_is_high(app, fake_stripe, caller, owner):
    configure(owner, enabled=False)
    charge(caller)
    assert autotopup.attempt(owner).startswith("skipped")
    configure(owner, threshold=1_000_000)  # on, but $8 is above $1
    charge(caller)
    assert autotopup.attempt(owner).startswith("skipped")
    assert fake_stripe.charges() == [] and auto_payments(owner) == []


def test_a_forgotten_card_is_not_charged_and_is_detached_at_stripe(app, fake_stripe, owner):
    configure(owner)
    autotopup.forget_card(account_of(owner))
    account = account_of(owner)
    assert (account.auto_topup_payment_method, account.auto_topup_card, account.auto_topup_enabled) == \
        (None, None, False)
    [card] = fake_stripe.payment_methods.values()
    assert card["customer"] is None
    configure(owner)
    assert autotopup.attempt(owner).startswith("skipped") and fake_stripe.charges() == []


# -- refused cards ---------------------------------------------------------------------------------

@pytest.mark.parametrize("code, says", [("card_declined", "Your card was declined."),
                                        ("authentication_required", "requires authentication")])
def test_a_card_refused_at_once_turns_it_off_and_mails(app, fake_stripe, caller, owner, code, says):
    configure(owner)
    fake_stripe.decline_next = code
    charge(caller)
    [payment] = auto_payments(owner)
    assert payment.status == "failed" and says in payment.failure
    assert account_of(owner).auto_topup_enabled is False
    [message] = mail_to(app, "automatic top-up of $20.00 failed")
    assert says in message.get_content() and "http://localhost/billing/" in message.get_content()
    # Stripe's later event for the same intent changes nothing and mails nobody again.
    [intent_id] = fake_stripe.intents
    assert payments.handle_event(fake_stripe.intent_event("payment_intent.payment_failed", intent_id)) \
        .startswith("already failed")
    assert len(mail_to(app, "failed")) == 1
    assert autotopup.attempt(owner, utcnow_plus(hours=2)).startswith("skipped")  # it is off
    assert len(fake_stripe.charges()) == 1


def test_a_payment_failed_event_turns_it_off_and_mails(app, fake_stripe, owner):
    configure(owner)
    autotopup.attempt(owner)
    [intent] = fake_stripe.intents.values()
    intent.update(status="requires_payment_method",
                  last_payment_error={"type": "card_error", "code": "card_declined", "message": "Insufficient funds."})
    evt = fake_stripe.intent_event("payment_intent.payment_failed", intent["id"])

    outcome = payments.handle_event(evt)

    assert outcome.startswith("failed") and payments.handle_event(evt) == payments.DUPLICATE
    [payment] = auto_payments(owner)
    assert (payment.status, payment.failure) == ("failed", "Insufficient funds.")
    assert account_of(owner).auto_topup_enabled is False
    [message] = mail_to(app, "failed")
    assert "Insufficient funds." in message.get_content()
    assert [e[0] for e in entries(owner)] == ["topup"]  # only the checkout's


def utcnow_plus(**delta) -> datetime:
    return datetime.now(timezone.utc) + timedelta(**delta)
