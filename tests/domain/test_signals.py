"""Abuse signals (portal/signals.py): client addresses per key and day, the sharing flag, the
operator's groups, and the privacy job's erasure of the addresses. Fixed clocks throughout."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, select

from portal import apikeys, legal, retention, signals, users
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, ApiKey, KeyAddress, LegalKind, Payment, PaymentSource, PaymentStatus, User
from tests.factories import make_user

NOW = datetime(2026, 9, 1, 6, 0, tzinfo=timezone.utc)


def new_key(email: str) -> int:
    user = make_user(email)
    with atomic():
        key, _ = apikeys.issue(db.session.get(User, user.id), "k")
    return key.id


def addresses(key_id: int) -> list[tuple[str, str]]:
    db.session.rollback()
    return sorted((str(row.day), row.ip) for row in
                  db.session.scalars(select(KeyAddress).where(KeyAddress.api_key_id == key_id)))


def record(key_id: int, ip: str, now=NOW, threshold=2) -> bool:
    with atomic():
        return signals.record(key_id, ip, now, threshold)


class Statements:
    """SQL statements the app's engine runs while counting."""

    def __init__(self, engine):
        self.engine, self.count = engine, 0

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, *args):
        self.count += 1


def test_addresses_are_recorded_once_per_key_and_day(app):
    key_id, other = new_key("a@example.com"), new_key("b@example.com")
    for ip in ("203.0.113.1", "203.0.113.1", "203.0.113.2"):
        record(key_id, ip, threshold=0)
    record(key_id, "203.0.113.1", NOW + timedelta(days=1), threshold=0)  # the next UTC day counts again
    record(other, "203.0.113.1", threshold=0)
    assert addresses(key_id) == [("2026-09-01", "203.0.113.1"), ("2026-09-01", "203.0.113.2"),
                                 ("2026-09-02", "203.0.113.1")]
    assert addresses(other) == [("2026-09-01", "203.0.113.1")]
    assert signals.addresses_on(key_id, NOW.date()) == 2


def test_a_repeat_in_the_same_process_costs_no_query(app):
    key_id = new_key("memo@example.com")
    signals.note_call(app, key_id, "198.51.100.4")
    with Statements(db.engine) as seen:
        signals.note_call(app, key_id, "198.51.100.4")
    assert seen.count == 0
    with Statements(db.engine) as seen:
        signals.note_call(app, key_id, "198.51.100.5")  # a new address is written
    assert seen.count > 0
    assert [ip for _, ip in addresses(key_id)] == ["198.51.100.4", "198.51.100.5"]
    signals.note_call(app, key_id, None)  # an unknown address is not an address
    assert len(addresses(key_id)) == 2


def test_crossing_the_threshold_flags_the_key_once(app):
    key_id = new_key("shared@example.com")
    assert [record(key_id, f"203.0.113.{n}") for n in (1, 2, 1)] == [False, False, False]
    assert record(key_id, "203.0.113.3") is True          # 3 addresses: more than 2
    assert record(key_id, "203.0.113.4") is False         # flagged already: once
    assert record(key_id, "203.0.113.5", NOW + timedelta(days=1)) is False
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    assert (key.sharing_flagged_at, key.sharing_addresses) == (NOW, 3)


def test_a_threshold_of_zero_never_flags(app):
    key_id = new_key("off@example.com")
    assert not any(record(key_id, f"203.0.113.{n}", threshold=0) for n in range(1, 20))
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).sharing_flagged_at is None


def test_rotate_keeps_the_name_and_limits_and_revokes_the_old_key(app):
    from portal.models import CatalogModel
    from tests.factories import make_model
    make_model("echo-1")
    key_id = new_key("rotate@example.com")
    with atomic():
        key = db.session.get(ApiKey, key_id)
        apikeys.set_limits(key, apikeys.Limits(allowed_models=["echo-1"], ip_allowlist="10.0.0.0/8",
                                               spend_cap_total=5_000_000, spend_cap_monthly=1_000_000,
                                               max_concurrency=3))
        key.sharing_flagged_at, key.sharing_addresses = NOW, 12
    with atomic():
        new, plaintext = apikeys.rotate(db.session.get(ApiKey, key_id))
    db.session.rollback()
    old, new = db.session.get(ApiKey, key_id), db.session.get(ApiKey, new.id)
    assert old.revoked_at is not None and new.revoked_at is None and new.id != old.id
    assert apikeys.hash_key(plaintext) == new.key_hash != old.key_hash and new.hint != old.hint
    same = ("user_id", "name", "allowed_models", "ip_allowlist", "spend_cap_total", "spend_cap_monthly",
            "max_concurrency", "expires_at")
    assert [getattr(new, n) for n in same] == [getattr(old, n) for n in same]
    assert (new.sharing_flagged_at, new.sharing_addresses, new.sharing_cleared_at, new.held) == (None, None, None, 0)
    assert apikeys.authenticate(plaintext).key_id == new.id
    with pytest.raises(Exception, match="revoked"):
        with atomic():
            apikeys.rotate(db.session.get(ApiKey, key_id))
    assert db.session.scalar(select(func.count()).select_from(CatalogModel)) == 1


def test_retention_erases_old_key_addresses(app):
    key_id = new_key("kept@example.com")
    record(key_id, "203.0.113.1", NOW - timedelta(days=91), threshold=0)
    record(key_id, "203.0.113.2", NOW - timedelta(days=90), threshold=0)  # the cutoff's own day is kept
    record(key_id, "203.0.113.3", NOW - timedelta(days=1), threshold=0)
    erased = retention.erase_old_addresses(NOW, 90)
    assert erased["key_address"] == 1
    assert [ip for _, ip in addresses(key_id)] == ["203.0.113.2", "203.0.113.3"]
    assert retention.erase_old_addresses(NOW, 90)["key_address"] == 0
    assert retention.erase_old_addresses(NOW + timedelta(days=1), 90)["key_address"] == 1


def test_closing_an_account_erases_its_key_addresses_with_its_other_data(app):
    key_id, other = new_key("gone@example.com"), new_key("stays@example.com")
    record(key_id, "203.0.113.1", threshold=0)
    record(other, "203.0.113.1", threshold=0)
    with atomic():
        user = db.session.scalar(select(User).where(User.email == "gone@example.com"))
        users.terminate(user, "closed by the user")
        user.status_changed_at = NOW
    assert retention.erase_closed_accounts(NOW + timedelta(days=180), 180).accounts == [user.id]
    assert addresses(key_id) == [] and len(addresses(other)) == 1


# -- the operator's review ------------------------------------------------------------------------

def paid(user, fingerprint, n):
    with atomic():
        db.session.add(Payment(account_id=user.account.id, source=PaymentSource.STRIPE.value,
                               status=PaymentStatus.PAID.value, amount=1_000_000, card_fingerprint=fingerprint,
                               checkout_session_id=f"cs_{user.id}_{n}", paid_at=NOW))


def emails(group) -> list[str]:
    return [p.email for p in group.people]


def test_accounts_paying_with_one_card_form_a_group(app):
    a, b, c = (make_user(f"{n}@example.com") for n in "abc")
    paid(a, "fp_one", 1)
    paid(a, "fp_one", 2)  # one account paying twice is no group
    paid(b, "fp_one", 3)
    paid(c, "fp_other", 4)
    paid(c, None, 5)
    groups = signals.shared_cards()
    assert [(g.what, emails(g)) for g in groups] == [("fp_one", ["a@example.com", "b@example.com"])]


def signed_up(email, ip, at):
    user = make_user(email)
    terms = legal.current(LegalKind.TERMS)
    with atomic():
        row = db.session.get(User, user.id)
        row.created_at = at
        legal.accept(row, terms, ip)
    return user


def test_sign_ups_from_one_address_within_the_window_form_a_group(app):
    with atomic():
        legal.publish(LegalKind.TERMS, "v1", "# Terms", significant=False)
    signed_up("first@example.com", "203.0.113.9", NOW - timedelta(hours=30))
    signed_up("second@example.com", "203.0.113.9", NOW - timedelta(hours=20))
    signed_up("third@example.com", "203.0.113.9", NOW - timedelta(hours=1))   # 19 h after the second
    signed_up("much-later@example.com", "203.0.113.9", NOW + timedelta(days=3))
    signed_up("elsewhere@example.com", "198.51.100.1", NOW - timedelta(hours=2))
    groups = signals.signup_clusters(timedelta(hours=24), NOW - timedelta(days=30))
    assert [(g.what, emails(g)) for g in groups] == [
        ("203.0.113.9", ["first@example.com", "second@example.com", "third@example.com"])]
    assert (groups[0].since, groups[0].until) == (NOW - timedelta(hours=30), NOW - timedelta(hours=1))
    # A later consent (new terms) from the same address is not a sign-up.
    with atomic():
        legal.publish(LegalKind.TERMS, "v2", "# Terms 2", significant=False)
        legal.accept(db.session.scalar(select(User).where(User.email == "elsewhere@example.com")),
                     legal.current(LegalKind.TERMS), "203.0.113.9")
    assert [emails(g) for g in signals.signup_clusters(timedelta(hours=24), NOW - timedelta(days=30))] == [
        ["first@example.com", "second@example.com", "third@example.com"]]
    assert signals.signup_clusters(timedelta(hours=5), NOW - timedelta(days=30)) == []


def test_accounts_whose_keys_are_used_from_one_address_form_a_group(app):
    a1, b = new_key("a@example.com"), new_key("b@example.com")
    with atomic():
        owner = db.session.scalar(select(User).where(User.email == "a@example.com"))
        a2, _ = apikeys.issue(owner, "second")
    record(a1, "203.0.113.50", threshold=0)
    record(a2.id, "203.0.113.50", threshold=0)   # one account's two keys: no group
    record(a1, "203.0.113.60", NOW - timedelta(days=2), threshold=0)
    record(b, "203.0.113.60", threshold=0)
    record(b, "203.0.113.70", NOW - timedelta(days=40), threshold=0)  # before the look-back
    record(a1, "203.0.113.70", threshold=0)
    groups = signals.shared_key_addresses((NOW - timedelta(days=30)).date())
    assert [(g.what, emails(g), str(g.since), str(g.until)) for g in groups] == [
        ("203.0.113.60", ["a@example.com", "b@example.com"], "2026-08-30", "2026-09-01")]


def test_the_review_puts_it_together(app):
    key_id = new_key("flagged@example.com")
    for n in range(1, 4):
        record(key_id, f"203.0.113.{n}")
    review = signals.review(app.config, NOW + timedelta(hours=1))
    assert [key.id for key, _ in review.flagged] == [key_id] and not review.empty
    assert review.cards == review.signups == review.key_addresses == []
    assert db.session.scalar(select(func.count()).select_from(Account)) == 1


# -- clearing a false positive -------------------------------------------------------------------

def clear(key_id: int, now) -> None:
    from portal.audit import Actor
    with atomic():
        signals.clear(db.session.get(ApiKey, key_id), actor=Actor(label="test"), reason="an office", now=now)


def flagged_key(email: str) -> int:
    key_id = new_key(email)
    assert [record(key_id, f"203.0.113.{n}") for n in (1, 2, 3)] == [False, False, True]
    return key_id


def test_a_cleared_key_is_not_flagged_again_that_day_by_the_addresses_it_had(app):
    key_id = flagged_key("office@example.com")
    clear(key_id, NOW + timedelta(hours=1))
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    assert (key.sharing_flagged_at, key.sharing_addresses, key.sharing_cleared_at) == (None, None,
                                                                                     NOW + timedelta(hours=1))
    assert signals.flagged_keys() == []
    later = NOW + timedelta(hours=2)
    # A 4th and 5th address that day: two new ones since the clear, not more than the threshold of 2.
    assert [record(key_id, ip, later) for ip in ("203.0.113.1", "203.0.113.4", "203.0.113.5")] == [False] * 3
    # A third new address since the clear: more than 2, flagged again.
    assert record(key_id, "203.0.113.6", later) is True
    db.session.rollback()
    assert db.session.get(ApiKey, key_id).sharing_addresses == 6


def test_a_cleared_key_is_flagged_again_on_a_later_day(app):
    key_id = flagged_key("later@example.com")
    clear(key_id, NOW + timedelta(hours=1))
    tomorrow = NOW + timedelta(days=1)
    assert [record(key_id, f"203.0.113.{n}", tomorrow) for n in (1, 2, 3)] == [False, False, True]
    db.session.rollback()
    key = db.session.get(ApiKey, key_id)
    assert (key.sharing_flagged_at, key.sharing_addresses) == (tomorrow, 3)


def test_clearing_is_audited_and_refused_for_a_key_not_flagged(app):
    from portal.errors import InvalidInput
    from portal.models import AuditEntry
    key_id = flagged_key("audit@example.com")
    clear(key_id, NOW + timedelta(hours=1))
    db.session.rollback()
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "key.sharing_clear"))
    assert (entry.actor, entry.target_type, entry.target_id, entry.reason) == ("test", "api_key", str(key_id),
                                                                               "an office")
    assert entry.before == {"sharing_flagged_at": NOW.isoformat(), "sharing_addresses": 3}
    assert entry.after["addresses_today"] == 3
    with pytest.raises(InvalidInput, match="not flagged"):
        clear(key_id, NOW + timedelta(hours=2))
