"""Debts, welcome credit once per person, and refund requests that reach the person and have a status."""
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import apikeys, ledger, legal, refunds, users
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, EntryKind, LegalKind, RefundRequest, RefundStatus, User
from tests.factories import PASSWORD, make_user
from tests.web.helpers import last_link, path_of, publish_terms, register


def refund_rows() -> list[RefundRequest]:
    db.session.rollback()
    return list(db.session.scalars(select(RefundRequest).order_by(RefundRequest.id)))


def close(client, refund=False, password=PASSWORD):
    data = {"close-password": password}
    if refund:
        data["refund"] = "yes"
    return client.post("/account/close", data=data)


def test_closing_with_a_negative_balance_is_refused(client, auth):
    user = auth.user(credit=1_000_000)
    with atomic():
        hold = ledger.hold(user.account.id, 1_000_000)
        ledger.settle(hold, 3_000_000)  # the call cost more than its hold: $2 owed
    refused = close(client)
    assert refused.status_code == 422
    assert b"Your balance is -$2.00, which is owed" in refused.data and b"Top up at least $2.00" in refused.data
    assert b"http://localhost/billing/" in refused.data
    db.session.rollback()
    assert db.session.get(User, user.id).status == "active"


def test_closing_with_a_call_in_flight_is_refused(client, auth):
    user = auth.user(credit=1_000_000)
    with atomic():
        ledger.hold(user.account.id, 250_000)
    refused = close(client, refund=True)
    assert refused.status_code == 422 and b"A call is still in progress. Wait for it to finish" in refused.data
    assert refund_rows() == []


def verify_from_mail(app, client, address):
    return client.get(path_of(last_link(app, address)))


def test_welcome_credit_is_given_once_per_person(app, client, auth):
    publish_terms()
    register(client, "ada@gmail.com")
    verify_from_mail(app, client, "ada@gmail.com")
    auth.login("ada@gmail.com", "a long passphrase")
    assert close(client, refund=True, password="a long passphrase").status_code == 303
    # The same person again, under another spelling of the same mailbox.
    register(client, "A.D.A+again@googlemail.com")
    assert verify_from_mail(app, client, "A.D.A+again@googlemail.com").status_code == 302
    db.session.rollback()
    again = users.find_user("ada@gmail.com")
    assert again.is_verified and again.account.balance == 0
    first = db.session.scalar(select(Account).where(Account.id != again.account.id))
    assert first.balance == 1_000_000  # the first account's credit, refund requested


def test_welcome_credit_skips_quietly_when_already_granted(app):
    """Domain view of the rule: the earlier grant is found, no ReferenceConflict reaches the person."""
    first = make_user("twice@example.com")
    reference = users.signup_credit_reference("twice@example.com")
    with atomic():
        ledger.credit(first.account.id, 1_000_000, EntryKind.GRANT, memo="welcome credit", reference=reference)
        users.close(db.session.get(User, first.id), PASSWORD, with_refund=True)
    second = make_user("twice@example.com", verified=False)
    with atomic():
        token = users.email_links.issue(second, users.TokenPurpose.VERIFY)
    with atomic():
        users.verify_email(token, signup_credit=1_000_000)
    db.session.rollback()
    assert db.session.get(User, second.id).account.balance == 0


def test_a_refund_request_keeps_the_real_contact_address(client, auth):
    auth.user(credit=750_000)
    close(client, refund=True)
    [refund] = refund_rows()
    assert refund.contact_email == "person@example.com" and refund.status == "requested"
    assert db.session.get(User, refund.user_id).email.endswith("@invalid")


def declined_user(client, auth, credit=2_500_000):
    user = auth.user(credit=credit)
    with atomic():
        apikeys.issue(user, "k")
    publish_terms("v9", significant=True)
    return user


def test_one_open_refund_request_per_account(client, auth):
    declined_user(client, auth)
    client.post("/consent", data={"decision": "decline", "reason": "too expensive"})
    again = client.post("/consent", data={"decision": "decline", "reason": "still no"}, follow_redirects=True)
    assert b"We received your refund request" in again.data
    [refund] = refund_rows()
    assert (refund.reason, refund.status) == ("too expensive", "requested")


def test_the_database_allows_one_open_request_per_account(app):
    user = make_user(credit=1_000_000)
    with atomic():
        first = refunds.request(user, "first")
        first.status = RefundStatus.REFUSED.value  # a closed request does not count
    with atomic():
        refunds.request(user, "second")
    with pytest.raises(IntegrityError), atomic():
        db.session.add(RefundRequest(user_id=user.id, contact_email=user.email, balance_at_request=1,
                                     status=RefundStatus.REQUESTED.value))
        db.session.flush()


def test_the_open_request_and_its_status_are_shown(client, auth):
    declined_user(client, auth)
    received = client.post("/consent", data={"decision": "decline"}, follow_redirects=True)
    assert b'data-testid="refund-status">requested<' in received.data
    page = client.get("/consent").get_data(as_text=True)
    assert 'data-testid="refund"' in page and "$2.50 is <strong>requested</strong>" in page


def test_accepting_after_declining_cancels_the_request_and_says_so(client, auth):
    declined_user(client, auth)
    client.post("/consent", data={"decision": "decline"})
    accepted = client.post("/consent", data={"decision": "accept"}, follow_redirects=True)
    assert b"Your refund request of $2.50 is cancelled" in accepted.data
    [refund] = refund_rows()
    assert refund.status == "cancelled" and refund.resolved_at is not None
    account = client.get("/account/").get_data(as_text=True)
    assert 'data-testid="refund-status">cancelled<' in account
    assert legal.needs_consent(db.session.get(User, refund.user_id)) is None


def test_accepting_without_an_open_request_says_nothing_of_refunds(client, auth):
    declined_user(client, auth)
    accepted = client.post("/consent", data={"decision": "accept"}, follow_redirects=True)
    assert b"refund request" not in accepted.data
    assert refund_rows() == []
    assert legal.current(LegalKind.TERMS).version == "v9"
