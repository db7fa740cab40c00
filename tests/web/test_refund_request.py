"""Asking for a refund from the billing page: the form, the password, keys stopped, the open request, cancelling."""
from sqlalchemy import select

from portal import apikeys
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, RefundRequest, User
from tests.domain.test_refunds_approval import USD, grant, pay_by_hand
from tests.factories import PASSWORD

PAGE = "/billing/refund/"


def with_key(user) -> None:
    with atomic():
        apikeys.issue(db.session.get(User, user.id), "laptop")


def live_keys(user) -> int:
    db.session.rollback()
    return len(db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id,
                                                       ApiKey.revoked_at.is_(None))).all())


def requests_of(user) -> list[RefundRequest]:
    db.session.rollback()
    return list(db.session.scalars(select(RefundRequest).where(RefundRequest.user_id == user.id)
                                   .order_by(RefundRequest.id)))


def test_the_page_shows_what_is_refundable_and_the_policy(client, auth):
    user = auth.user()
    pay_by_hand(user, 5 * USD)
    grant(user, 2 * USD)
    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Your balance is $7.00" in html and 'data-testid="refundable">$5.00<' in html
    assert "Your API keys stop working as soon as you ask" in html
    assert 'href="/legal/refunds"' in html and 'name="password"' in html and 'name="close_account"' in html


def test_the_page_needs_a_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_wrong_password_files_nothing(client, auth):
    user = auth.user()
    pay_by_hand(user, 5 * USD)
    with_key(user)
    response = client.post(PAGE, data={"password": "not my password", "reason": "bye"})
    assert response.status_code == 422 and b"Your password is not correct." in response.data
    assert requests_of(user) == [] and live_keys(user) == 1


def test_filing_stops_the_keys_and_shows_the_open_request(client, auth):
    user = auth.user()
    pay_by_hand(user, 5 * USD)
    with_key(user)
    response = client.post(PAGE, data={"password": PASSWORD, "reason": "moving on", "close_account": "y"})
    assert response.status_code == 303 and response.headers["Location"] == PAGE
    [refund] = requests_of(user)
    assert (refund.status, refund.reason, refund.close_account, refund.balance_at_request) == \
        ("requested", "moving on", True, 5 * USD)
    assert live_keys(user) == 0
    page = client.get(PAGE).get_data(as_text=True)
    assert f"We received your refund request {refund.id}. Your 1 API key is revoked." in page
    assert 'data-testid="open-refund"' in page and "Your account will be closed once the refund is paid." in page
    assert 'name="password"' not in page  # no second request while one is open
    assert "Cancel my refund request" in page
    # Filing again (a second tab) finds the same request.
    client.post(PAGE, data={"password": PASSWORD})
    assert len(requests_of(user)) == 1


def test_without_the_box_the_account_stays(client, auth):
    user = auth.user()
    pay_by_hand(user, 5 * USD)
    client.post(PAGE, data={"password": PASSWORD})
    [refund] = requests_of(user)
    assert refund.close_account is False and refund.reason == "asked from the billing page"


def test_cancelling_keeps_the_balance_and_the_keys_revoked(client, auth):
    user = auth.user()
    pay_by_hand(user, 5 * USD)
    with_key(user)
    client.post(PAGE, data={"password": PASSWORD})
    response = client.post(PAGE + "cancel")
    assert response.status_code == 303
    [refund] = requests_of(user)
    assert refund.status == "cancelled" and refund.resolved_at is not None
    assert live_keys(user) == 0
    page = client.get(PAGE).get_data(as_text=True)
    assert "is cancelled: your balance stays on your account" in page and "stay revoked" in page
    assert 'name="password"' in page  # they may ask again
    assert "You have no open refund request." in client.post(PAGE + "cancel", follow_redirects=True).get_data(
        as_text=True)


def test_nothing_refundable_offers_no_form(client, auth):
    user = auth.user(credit=3 * USD)  # a grant only
    with_key(user)
    page = client.get(PAGE).get_data(as_text=True)
    assert "Nothing on your account is refundable now." in page and 'name="password"' not in page
    response = client.post(PAGE, data={"password": PASSWORD})
    assert response.status_code == 422
    assert requests_of(user) == [] and live_keys(user) == 1
