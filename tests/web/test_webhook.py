"""POST /stripe/webhook through the test client: signed bodies only, each event's money effect once."""
import json
import time

import pytest
import stripe
from sqlalchemy import func, select

from portal import apikeys, ledger, payments
from portal.database import atomic
from portal.errors import AccountSuspended, InsufficientFunds
from portal.extensions import db
from portal.models import LedgerEntry, Payment, StripeEvent, User
from tests.conftest import stripe_settings
from tests.factories import make_user, open_checkout
from tests.fake_stripe import WEBHOOK_SECRET, event, signed

URL = "/stripe/webhook"


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


def deliver(client, evt, secret=WEBHOOK_SECRET, **kwargs):
    payload, header = signed(evt, secret, **kwargs)
    return client.post(URL, data=payload, headers={"Stripe-Signature": header}, content_type="application/json")


def accepted(response):
    assert response.status_code == 200, response.data
    assert response.get_json() == {"received": True}
    return response


def refused(response, message):
    assert response.status_code == 400, response.data
    assert message in response.get_json()["error"]
    return response


def amounts(user) -> list[tuple[str, int]]:
    db.session.rollback()
    return [(e.kind, e.amount) for e in db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.account_id == user.account.id).order_by(LedgerEntry.id))]


def events() -> list[StripeEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(StripeEvent).order_by(StripeEvent.received_at)))


def paid_session(client, fake, user, cents=2_000) -> str:
    session_id = open_checkout(user, cents)
    fake.pay(session_id)
    accepted(deliver(client, fake.session_event("checkout.session.completed", session_id)))
    return session_id


# -- what is refused --------------------------------------------------------------------------

def _missing(client, payload, header):
    return client.post(URL, data=payload, content_type="application/json")


def _tampered(client, payload, header):
    return client.post(URL, data=payload.replace(b'"amount_total": 2000', b'"amount_total": 200000'),
                       headers={"Stripe-Signature": header}, content_type="application/json")


def _garbled(client, payload, header):
    return client.post(URL, data=payload, headers={"Stripe-Signature": "t=1,v1=00"}, content_type="application/json")


@pytest.mark.parametrize("send", [_missing, _tampered, _garbled])
def test_an_unsigned_or_altered_body_is_refused_and_writes_nothing(app, client, fake_stripe, send):
    user = make_user()
    session_id = open_checkout(user)
    fake_stripe.pay(session_id)
    payload, header = signed(fake_stripe.session_event("checkout.session.completed", session_id))
    assert b'"amount_total": 2000' in payload

    refused(send(client, payload, header), "Stripe-Signature")

    assert events() == [] and amounts(user) == []


@pytest.mark.parametrize("kwargs", [{"secret": "whsec_someone_elses"}, {"timestamp": int(time.time()) - 301}],
                         ids=["wrong secret", "stale"])
def test_a_wrong_secret_or_stale_signature_is_refused(app, client, fake_stripe, kwargs):
    user = make_user()
    session_id = open_checkout(user)
    fake_stripe.pay(session_id)
    refused(deliver(client, fake_stripe.session_event("checkout.session.completed", session_id), **kwargs),
            "Stripe-Signature")
    assert events() == [] and amounts(user) == []


def test_both_secrets_work_while_the_signing_secret_is_rolled(app, client, fake_stripe):
    app.config["STRIPE_WEBHOOK_SECRET"] = f"whsec_the_new_one, {WEBHOOK_SECRET}"
    user = make_user()
    old, new = open_checkout(user), open_checkout(user)
    for session_id in (old, new):
        fake_stripe.pay(session_id)
    assert deliver(client, fake_stripe.session_event("checkout.session.completed", old)).status_code == 200
    assert deliver(client, fake_stripe.session_event("checkout.session.completed", new),
                   secret="whsec_the_new_one").status_code == 200
    refused(deliver(client, fake_stripe.session_event("checkout.session.completed", new), secret="whsec_neither"),
            "Stripe-Signature")
    assert len(amounts(user)) == 2


def test_webhooks_refused_when_not_configured(app, client):
    app.config["STRIPE_WEBHOOK_SECRET"] = ""
    refused(deliver(client, event("customer.created", {"id": "cus_1"})), "webhooks are not configured")
    assert events() == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe",
                                  json.dumps({"id": "evt_1", "type": "charge.refunded"}).encode()])
def test_a_signed_body_that_is_no_event_is_refused(app, client, body):
    header = stripe.WebhookSignature.generate_signature_header(body.decode("latin-1"), WEBHOOK_SECRET,
                                                                timestamp=int(time.time()))
    response = client.post(URL, data=body, headers={"Stripe-Signature": header}, content_type="application/json")
    assert response.status_code == 400 and "error" in response.get_json()
    assert events() == []


def test_an_unexpected_failure_is_not_acknowledged_and_the_retry_credits(app, client, fake_stripe, monkeypatch):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as production does, with a 500
    user = make_user()
    session_id = open_checkout(user)
    fake_stripe.pay(session_id)
    evt = fake_stripe.session_event("checkout.session.completed", session_id)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(payments, "_dispatch", broken)
    assert deliver(client, evt).status_code == 500
    assert events() == [] and amounts(user) == []

    monkeypatch.undo()
    accepted(deliver(client, evt))
    assert amounts(user) == [("topup", 20_000_000)]


# -- each effect once -------------------------------------------------------------------------

def test_the_same_event_twice_credits_once(app, client, fake_stripe):
    user = make_user()
    session_id = open_checkout(user)
    fake_stripe.pay(session_id)
    evt = fake_stripe.session_event("checkout.session.completed", session_id)

    accepted(deliver(client, evt))
    accepted(deliver(client, evt))

    assert amounts(user) == [("topup", 20_000_000)]
    assert [e.id for e in events()] == [evt["id"]]


def test_completed_and_async_succeeded_credit_once(app, client, fake_stripe):
    user = make_user()
    session_id = open_checkout(user)
    fake_stripe.pay(session_id)

    accepted(deliver(client, fake_stripe.session_event("checkout.session.completed", session_id)))
    accepted(deliver(client, fake_stripe.session_event("checkout.session.async_payment_succeeded", session_id)))

    assert amounts(user) == [("topup", 20_000_000)]
    assert len(events()) == 2


def test_partial_then_full_refund_debits_exactly_the_new_parts(app, client, fake_stripe):
    user = make_user()
    session_id = paid_session(client, fake_stripe, user, 5_000)
    partial = fake_stripe.charge_refunded(session_id, 2_000)
    full = fake_stripe.charge_refunded(session_id)

    accepted(deliver(client, partial))
    accepted(deliver(client, partial))
    accepted(deliver(client, full))

    assert amounts(user) == [("topup", 50_000_000), ("refund", -20_000_000), ("refund", -30_000_000)]


def test_a_refund_delivered_before_the_payment_is_taken_when_the_payment_is_credited(app, client, fake_stripe):
    """Stripe does not promise order: a refund (or a late retry of `completed`) can come first."""
    user = make_user()
    session_id = open_checkout(user, 5_000)
    fake_stripe.pay(session_id)
    early = fake_stripe.charge_refunded(session_id, 2_000)
    accepted(deliver(client, early))  # matches no paid payment yet: recorded, flagged, nothing taken
    assert amounts(user) == [] and events()[-1].flagged

    accepted(deliver(client, fake_stripe.session_event("checkout.session.completed", session_id)))
    assert amounts(user) == [("topup", 50_000_000), ("refund", -20_000_000)]

    accepted(deliver(client, early))  # redelivered: already recorded
    accepted(deliver(client, event("charge.refunded", dict(fake_stripe.charge_of(session_id)))))  # same total
    accepted(deliver(client, fake_stripe.charge_refunded(session_id)))  # the rest, later
    assert amounts(user) == [("topup", 50_000_000), ("refund", -20_000_000), ("refund", -30_000_000)]


def test_a_dispute_delivered_before_the_payment_suspends_when_the_payment_is_credited(app, client, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, 5_000)
    fake_stripe.pay(session_id)
    accepted(deliver(client, fake_stripe.dispute(session_id)))
    assert db.session.get(User, user.id).status == "active"  # nothing of ours matched it yet

    accepted(deliver(client, fake_stripe.session_event("checkout.session.completed", session_id)))

    db.session.rollback()
    assert db.session.get(User, user.id).status == "suspended"
    assert events()[-1].flagged and "disputed" in events()[-1].outcome


def test_a_refund_into_a_negative_balance_then_a_hold_is_refused(app, client, fake_stripe):
    user = make_user()
    session_id = paid_session(client, fake_stripe, user, 1_000)
    with atomic():
        ledger.settle(ledger.hold(user.account.id, 4_000_000), 4_000_000)

    accepted(deliver(client, fake_stripe.charge_refunded(session_id)))

    assert amounts(user)[-1] == ("refund", -10_000_000)
    assert db.session.get(User, user.id).account.balance == -4_000_000
    with pytest.raises(InsufficientFunds), atomic():
        ledger.hold(user.account.id, 1)


def test_a_dispute_suspends_debits_once_and_flags(app, client, fake_stripe):
    user = make_user()
    _, key = apikeys.issue(user, "ci")
    db.session.commit()
    session_id = paid_session(client, fake_stripe, user, 2_000)
    assert apikeys.authenticate(key)
    created = fake_stripe.dispute(session_id)

    accepted(deliver(client, created))
    accepted(deliver(client, created))

    assert amounts(user) == [("topup", 20_000_000), ("dispute", -20_000_000)]
    db.session.rollback()
    assert db.session.get(User, user.id).status == "suspended"
    with pytest.raises(AccountSuspended):
        apikeys.authenticate(key)
    flagged = [e for e in events() if e.flagged]
    assert [e.id for e in flagged] == [created["id"]] and created["data"]["object"]["id"] in flagged[0].outcome


def test_a_won_dispute_restores_nothing(app, client, fake_stripe):
    user = make_user()
    session_id = paid_session(client, fake_stripe, user, 2_000)
    dispute_id = "dp_test_won"
    accepted(deliver(client, fake_stripe.dispute(session_id, dispute_id=dispute_id)))
    closed = fake_stripe.dispute(session_id, "won", dispute_id=dispute_id)

    accepted(deliver(client, closed))

    assert amounts(user) == [("topup", 20_000_000), ("dispute", -20_000_000)]
    db.session.rollback()
    assert db.session.scalar(select(Payment.dispute_status)) == "won"
    assert db.session.get(StripeEvent, closed["id"]).flagged
    assert db.session.get(User, user.id).status == "suspended"


def test_an_unknown_event_type_is_recorded_and_ignored(app, client):
    evt = event("invoice.finalized", {"id": "in_1", "object": "invoice"})
    accepted(deliver(client, evt))
    [row] = events()
    assert (row.id, row.type, row.flagged) == (evt["id"], "invoice.finalized", False)
    assert db.session.scalar(select(func.count(LedgerEntry.id))) == 0


def test_a_session_for_an_unknown_account_is_flagged_and_credits_nothing(app, client, fake_stripe):
    user = make_user()
    session_id = open_checkout(user, record=False)
    fake_stripe.sessions[session_id]["metadata"] = {"account_id": "424242"}
    fake_stripe.pay(session_id)

    accepted(deliver(client, fake_stripe.session_event("checkout.session.completed", session_id)))

    [row] = events()
    assert row.flagged and "unknown account" in row.outcome
    assert db.session.scalar(select(func.count(LedgerEntry.id))) == 0
    assert db.session.scalar(select(func.count(Payment.id))) == 0
