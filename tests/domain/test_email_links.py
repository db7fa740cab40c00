"""Links sent by mail: each works once, only for its own purpose, only until it expires."""
from datetime import timedelta

import pytest

from portal import email_links
from portal.database import atomic
from portal.email_links import InvalidToken
from portal.models import TokenPurpose, utcnow
from tests.factories import make_user


def issue(user, purpose, **kwargs) -> str:
    with atomic():
        return email_links.issue(user, purpose, **kwargs)


def consume(token, purpose):
    with atomic():
        return email_links.consume(token, purpose)


@pytest.mark.parametrize("issued, used", [
    (TokenPurpose.CHANGE_EMAIL, TokenPurpose.RESET),   # mailed to the new address: no password reset with it
    (TokenPurpose.VERIFY, TokenPurpose.RESET),
    (TokenPurpose.RESET, TokenPurpose.CHANGE_EMAIL),
])
def test_a_link_works_only_for_its_own_purpose(app, issued, used):
    user = make_user()
    token = issue(user, issued, new_email="new@example.com" if issued == TokenPurpose.CHANGE_EMAIL else None)
    with pytest.raises(InvalidToken):
        consume(token, used)
    assert consume(token, issued).user_id == user.id  # the wrong try did not use it up


def test_a_link_works_once(app):
    token = issue(make_user(), TokenPurpose.RESET)
    consume(token, TokenPurpose.RESET)
    with pytest.raises(InvalidToken):
        consume(token, TokenPurpose.RESET)


def test_a_new_reset_link_voids_the_older_one(app):
    user = make_user()
    older = issue(user, TokenPurpose.RESET)
    newer = issue(user, TokenPurpose.RESET)
    with pytest.raises(InvalidToken):
        consume(older, TokenPurpose.RESET)
    assert consume(newer, TokenPurpose.RESET).user_id == user.id


def test_a_new_link_voids_only_the_same_purpose_and_user(app):
    user, other = make_user(), make_user("other@example.com")
    verify = issue(user, TokenPurpose.VERIFY)
    others = issue(other, TokenPurpose.RESET)
    issue(user, TokenPurpose.RESET)
    consume(verify, TokenPurpose.VERIFY)
    consume(others, TokenPurpose.RESET)


@pytest.mark.parametrize("minutes_later, works", [(59, True), (61, False)])
def test_a_reset_link_works_for_the_hour_the_page_promises(app, monkeypatch, minutes_later, works):
    token = issue(make_user(), TokenPurpose.RESET)
    monkeypatch.setattr(email_links, "utcnow", lambda: utcnow() + timedelta(minutes=minutes_later))
    if works:
        consume(token, TokenPurpose.RESET)
    else:
        with pytest.raises(InvalidToken):
            consume(token, TokenPurpose.RESET)


@pytest.mark.parametrize("purpose, lifetime", [(TokenPurpose.VERIFY, timedelta(days=2)),
                                               (TokenPurpose.CHANGE_EMAIL, timedelta(days=1))])
def test_other_links_expire_when_their_mail_says(app, monkeypatch, purpose, lifetime):
    token = issue(make_user(), purpose, new_email="new@example.com")
    monkeypatch.setattr(email_links, "utcnow", lambda: utcnow() + lifetime + timedelta(minutes=1))
    with pytest.raises(InvalidToken):
        consume(token, purpose)
    monkeypatch.setattr(email_links, "utcnow", lambda: utcnow() + lifetime - timedelta(minutes=1))
    consume(token, purpose)
