"""API keys without HTTP: issue, authenticate, the allow-lists, and spend caps counted with calls in flight."""
import ipaddress
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select

from portal import apikeys, catalog, ledger, users
from portal.database import atomic
from portal.errors import (AccountNotVerified, AccountSuspended, InvalidInput, KeyExpired, KeyRevoked, NotFound,
                           SpendCapReached, UnknownKey)
from portal.extensions import db
from portal.models import ApiKey, Hold, User, UserStatus, utcnow
from tests.factories import make_model, make_user

MONTH = "%Y-%m"
CREDIT = 10**13


def issue(user=None, name="k", **limits) -> tuple[int, str]:
    user = user or make_user(credit=CREDIT)
    with atomic():
        key, plaintext = apikeys.issue(db.session.get(User, user.id), name)
        if limits:
            apikeys.set_limits(key, apikeys.Limits(**limits))
        return key.id, plaintext


def key_row(key_id: int) -> ApiKey:
    db.session.rollback()  # end the read snapshot; see the row as committed now
    return db.session.get(ApiKey, key_id)


def change_key(key_id: int, **values) -> None:
    with atomic():
        key = db.session.get(ApiKey, key_id)
        for name, value in values.items():
            setattr(key, name, value)


def reserve(key_id: int, amount: int, ip: str | None = "198.51.100.7") -> int:
    """Open a call's money as calls.open_call does: the key's reservation, then the account's hold."""
    with atomic():
        apikeys.reserve(key_id, amount, ip)
        account_id = db.session.get(ApiKey, key_id).user.account.id
        return ledger.hold(account_id, amount, api_key_id=key_id)


def settle(key_id: int, hold_id: int, cost: int | None) -> None:
    """Close it as calls.close_call does: the reservation replaced by the cost; None releases it."""
    with atomic():
        apikeys.settle_spend(key_id, db.session.get(Hold, hold_id).amount, cost or 0)
        if cost is None:
            ledger.release(hold_id)
        else:
            ledger.settle(hold_id, cost)


def at(monkeypatch, moment: datetime) -> None:
    """Make apikeys' clock read `moment` (expiry and the month a spend counts in)."""
    monkeypatch.setattr(apikeys, "utcnow", lambda: moment)


# --- issue ---------------------------------------------------------------------------------------

def test_issue_stores_only_the_hash_and_a_short_hint(app):
    key_id, plaintext = issue(name="  laptop  ")
    key = key_row(key_id)
    assert plaintext.startswith("tg_") and len(plaintext) == 3 + 40 and plaintext[3:].isalnum()
    assert key.key_hash == apikeys.hash_key(plaintext) != plaintext
    assert key.hint == "tg_…" + plaintext[-4:]
    assert key.name == "laptop"
    _, other = issue(make_user("second@example.com"))
    assert other != plaintext


def test_keys_are_drawn_from_letters_and_digits(app):
    """62 symbols a character: with 40 of them, a few keys show every kind (a miss is ~1e-13 likely)."""
    user = make_user()
    body = "".join(issue(user, f"k{i}")[1][3:] for i in range(5))
    assert any(c.islower() for c in body) and any(c.isupper() for c in body) and any(c.isdigit() for c in body)
    assert len(set(body)) > 40


def test_issue_names_an_unnamed_key_default_and_refuses_a_long_name(app):
    user = make_user()
    assert key_row(issue(user, name="   ")[0]).name == "default"
    assert key_row(issue(user, name="x" * apikeys.MAX_NAME_LENGTH)[0]).name == "x" * apikeys.MAX_NAME_LENGTH
    with pytest.raises(InvalidInput, match="at most 100"):
        issue(user, name="x" * (apikeys.MAX_NAME_LENGTH + 1))


def test_issue_needs_a_verified_active_user(app):
    with pytest.raises(InvalidInput, match="has not verified"):
        issue(make_user("new@example.com", verified=False))
    suspended = make_user("bad@example.com")
    with atomic():
        users.suspend(db.session.get(User, suspended.id), "abuse")
    with pytest.raises(InvalidInput, match="is suspended"):
        issue(suspended)
    assert db.session.scalar(select(ApiKey)) is None


# --- authenticate --------------------------------------------------------------------------------

def test_authenticate_returns_who_the_key_speaks_for(app):
    user = make_user()
    key_id, plaintext = issue(user)
    caller = apikeys.authenticate(plaintext)
    assert (caller.key_id, caller.user_id, caller.account_id) == (key_id, user.id, user.account.id)
    assert caller.allowed_models is None and caller.networks is None
    assert caller.may_use("anything") and caller.may_call_from(None)


@pytest.mark.parametrize("plaintext, message", [
    (None, "missing or malformed"), ("", "missing or malformed"), ("sk-abc", "missing or malformed"),
    ("TG_abc", "missing or malformed"), ("tg_" + "x" * 40, "unknown API key"),
])
def test_unknown_or_malformed_keys_are_refused(app, plaintext, message):
    issue()
    with pytest.raises(UnknownKey, match=message):
        apikeys.authenticate(plaintext)


def test_a_key_without_the_prefix_is_refused_even_if_its_hash_is_stored(app):
    """The prefix is checked before the lookup: only keys we issued (tg_...) are ever looked up."""
    key_id, _ = issue()
    change_key(key_id, key_hash=apikeys.hash_key("sk-legacy-0123456789"))
    with pytest.raises(UnknownKey, match="malformed"):
        apikeys.authenticate("sk-legacy-0123456789")


def test_a_key_is_looked_up_by_its_whole_hash(app):
    _, plaintext = issue()
    for near_miss in (plaintext[:-1], plaintext + "x", plaintext[:-1] + ("a" if plaintext[-1] != "a" else "b")):
        with pytest.raises(UnknownKey, match="unknown API key"):
            apikeys.authenticate(near_miss)


def test_revoked_key_is_refused(app):
    key_id, plaintext = issue()
    with atomic():
        apikeys.revoke(db.session.get(ApiKey, key_id))
    with pytest.raises(KeyRevoked):
        apikeys.authenticate(plaintext)


def test_expiry_is_exact_to_the_microsecond(app, monkeypatch):
    moment = datetime(2031, 5, 17, 12, 0, 0, 123456, tzinfo=timezone.utc)
    key_id, plaintext = issue()
    at(monkeypatch, moment)
    change_key(key_id, expires_at=moment + timedelta(microseconds=1))
    assert apikeys.authenticate(plaintext).key_id == key_id
    change_key(key_id, expires_at=moment)  # expires at this very moment: no longer valid
    with pytest.raises(KeyExpired):
        apikeys.authenticate(plaintext)
    change_key(key_id, expires_at=moment - timedelta(days=1))
    with pytest.raises(KeyExpired):
        apikeys.authenticate(plaintext)


@pytest.mark.parametrize("status", [UserStatus.SUSPENDED.value, UserStatus.TERMINATED.value])
def test_keys_of_a_suspended_or_closed_account_are_refused(app, status):
    user = make_user()
    _, plaintext = issue(user)
    with atomic():
        db.session.get(User, user.id).status = status
    with pytest.raises(AccountSuspended, match=status):
        apikeys.authenticate(plaintext)


def test_keys_of_an_unverified_account_are_refused(app):
    user = make_user()
    _, plaintext = issue(user)
    with atomic():
        db.session.get(User, user.id).is_verified = False
    with pytest.raises(AccountNotVerified):
        apikeys.authenticate(plaintext)


def test_allowed_models_reach_the_caller(app):
    make_model("echo-1")
    make_model("echo-2")
    _, plaintext = issue(allowed_models=["echo-2"])
    caller = apikeys.authenticate(plaintext)
    assert caller.allowed_models == frozenset({"echo-2"})
    assert caller.may_use("echo-2") and not caller.may_use("echo-1") and not caller.may_use("")


def test_every_line_of_the_ip_allow_list_reaches_the_caller(app):
    _, plaintext = issue(ip_allowlist="203.0.113.0/24, 2001:db8::/32\n198.51.100.9")
    caller = apikeys.authenticate(plaintext)
    assert [caller.may_call_from(ip) for ip in ("203.0.113.200", "2001:db8::5", "198.51.100.9", "198.51.100.10")] \
        == [True, True, True, False]


# --- the IP allow-list, on its own ----------------------------------------------------------------

def caller_from(*networks: str) -> apikeys.Caller:
    return apikeys.Caller(1, "k", "tg_…abcd", 1, 1, None, tuple(ipaddress.ip_network(n) for n in networks))


@pytest.mark.parametrize("ip", [
    None, "", " ", "not-an-ip", "203.0.113", "203.0.113.256", "203.0.113.7 ", "203.0.113.7/32", "203.0.113.7%eth0",
    "198.51.100.7",                # outside the range
    "::ffff:198.51.100.7",         # IPv4-mapped, outside the range
    "2001:db9::1", "2001:db9::1%eth0",  # outside the IPv6 range, with and without a zone id
])
def test_an_allow_list_refuses_missing_unparsable_and_outside_addresses(ip):
    assert caller_from("203.0.113.0/24", "2001:db8::/32").may_call_from(ip) is False


@pytest.mark.parametrize("ip", ["203.0.113.0", "203.0.113.255", "2001:db8::1", "2001:db8:ffff::1"])
def test_an_allow_list_admits_addresses_in_its_ranges(ip):
    assert caller_from("203.0.113.0/24", "2001:db8::/32").may_call_from(ip) is True


@pytest.mark.parametrize("ip", [None, "", "localhost"])
def test_a_missing_address_is_not_taken_for_loopback(ip):
    """An allow-list of loopback (a key for local tools) still refuses a call whose address is unknown."""
    assert caller_from("127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128").may_call_from(ip) is False


def test_an_empty_allow_list_admits_no_one():
    assert caller_from().may_call_from("203.0.113.7") is False


def test_no_allow_list_admits_anyone():
    caller = apikeys.Caller(1, "k", "tg_…abcd", 1, 1)
    assert caller.may_call_from(None) and caller.may_call_from("not-an-ip")


# --- spend caps: reserve and settle_spend ----------------------------------------------------------

def test_a_key_without_caps_reserves_anything_and_notes_the_use(app):
    key_id, _ = issue()
    reserve(key_id, 10**12, ip="2001:db8::7")
    key = key_row(key_id)
    assert (key.held, key.last_used_ip) == (10**12, "2001:db8::7")
    assert key.last_used_at is not None and utcnow() - key.last_used_at < timedelta(hours=1)


@pytest.mark.parametrize("cap", ["spend_cap_total", "spend_cap_monthly"])
def test_a_cap_admits_exactly_up_to_itself(app, cap):
    key_id, _ = issue(**{cap: 1_000})
    with pytest.raises(SpendCapReached):
        reserve(key_id, 1_001)
    reserve(key_id, 1_000)
    with pytest.raises(SpendCapReached):
        reserve(key_id, 1)
    assert key_row(key_id).held == 1_000


@pytest.mark.parametrize("cap", ["spend_cap_total", "spend_cap_monthly"])
def test_calls_in_flight_count_against_a_cap(app, cap):
    key_id, _ = issue(**{cap: 1_000})
    reserve(key_id, 600)  # a call in flight
    with pytest.raises(SpendCapReached) as refused:
        reserve(key_id, 401)
    which = "total cap" if cap == "spend_cap_total" else f"cap for {utcnow().strftime(MONTH)}"
    assert str(refused.value).startswith(f"this key has spent $0.00 of its $0.001 {which}, and calls in flight "
                                         "hold $0.0006; the call could cost up to $0.000401."), str(refused.value)
    key = key_row(key_id)
    assert (key.held, key.spent_total, key.spent_month) == (600, 0, 0)  # the refusal changed nothing
    reserve(key_id, 400)
    assert key_row(key_id).held == 1_000


@pytest.mark.parametrize("cap", ["spend_cap_total", "spend_cap_monthly"])
def test_settled_spend_counts_against_a_cap(app, cap):
    key_id, _ = issue(**{cap: 1_000})
    settle(key_id, reserve(key_id, 900), 700)  # the call cost less than it held
    with pytest.raises(SpendCapReached):
        reserve(key_id, 301)
    reserve(key_id, 300)


def test_settle_spend_replaces_the_reservation_with_the_cost(app):
    key_id, _ = issue()
    first = reserve(key_id, 500)
    second = reserve(key_id, 80)
    settle(key_id, first, 123)
    key = key_row(key_id)
    assert (key.held, key.spent_total, key.spent_month) == (80, 123, 123)
    assert key.spent_month_key == utcnow().strftime(MONTH)
    settle(key_id, second, None)  # released: nothing spent
    key = key_row(key_id)
    assert (key.held, key.spent_total, key.spent_month) == (0, 123, 123)
    assert apikeys.spent_this_month(key) == 123


def test_the_monthly_cap_starts_again_each_month(app, monkeypatch):
    january = datetime(2031, 1, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    key_id, _ = issue(spend_cap_monthly=1_000, spend_cap_total=5_000)
    at(monkeypatch, january)
    settle(key_id, reserve(key_id, 1_000), 900)
    with pytest.raises(SpendCapReached, match="cap for 2031-01"):
        reserve(key_id, 101)
    key = key_row(key_id)
    assert (key.spent_month, key.spent_month_key, apikeys.spent_this_month(key)) == (900, "2031-01", 900)

    at(monkeypatch, january + timedelta(microseconds=1))  # February: last month's spend no longer counts
    assert apikeys.spent_this_month(key_row(key_id)) == 0
    february = reserve(key_id, 1_000)
    key = key_row(key_id)
    assert (key.held, key.spent_month, key.spent_month_key, key.spent_total) == (1_000, 0, "2031-02", 900)
    settle(key_id, february, 250)
    key = key_row(key_id)
    assert (key.held, key.spent_month, key.spent_month_key, key.spent_total) == (0, 250, "2031-02", 1_150)


def test_a_call_held_in_one_month_and_settled_in_the_next_counts_in_the_next(app, monkeypatch):
    key_id, _ = issue(spend_cap_monthly=1_000)
    at(monkeypatch, datetime(2031, 3, 31, 23, 59, tzinfo=timezone.utc))
    settle(key_id, reserve(key_id, 400), 300)
    late = reserve(key_id, 500)
    at(monkeypatch, datetime(2031, 4, 1, 0, 1, tzinfo=timezone.utc))
    settle(key_id, late, 200)
    key = key_row(key_id)
    assert (key.held, key.spent_month, key.spent_month_key, key.spent_total) == (0, 200, "2031-04", 500)


def test_last_months_spend_does_not_count_but_calls_in_flight_do(app):
    key_id, _ = issue(spend_cap_monthly=1_000)
    change_key(key_id, spent_month=900, spent_month_key="1999-01")
    reserve(key_id, 700)  # last month's 900 is not this month's
    with pytest.raises(SpendCapReached, match=r"spent \$0.00 of its \$0.001 cap for"):
        reserve(key_id, 301)  # but the 700 in flight is
    key = key_row(key_id)
    assert (key.held, key.spent_month, key.spent_month_key) == (700, 0, utcnow().strftime(MONTH))


def test_the_first_refusal_of_a_month_does_not_count_last_months_spend(app):
    key_id, _ = issue(spend_cap_monthly=1_000)
    change_key(key_id, spent_month=900, spent_month_key="1999-01")
    with pytest.raises(SpendCapReached) as refused:
        reserve(key_id, 1_001)  # refused before anything reset the month
    assert str(refused.value).startswith(
        f"this key has spent $0.00 of its $0.001 cap for {utcnow().strftime(MONTH)}; the call could cost up to "
        "$0.001001."), str(refused.value)


def test_the_refusal_names_the_cap_that_refused(app):
    key_id, _ = issue(spend_cap_total=10_000, spend_cap_monthly=2_000)
    settle(key_id, reserve(key_id, 1_500), 1_500)
    with pytest.raises(SpendCapReached) as monthly:
        reserve(key_id, 501)
    assert f"$0.0015 of its $0.002 cap for {utcnow().strftime(MONTH)}" in str(monthly.value)
    assert "$0.000501" in str(monthly.value)
    change_key(key_id, spend_cap_total=1_800)
    with pytest.raises(SpendCapReached) as total:
        reserve(key_id, 301)
    assert "$0.0015 of its $0.0018 total cap" in str(total.value) and "$0.000301" in str(total.value)


def settles_during_the_refusal(key_id: int, released: int):
    """After the key's conditional UPDATE matches no row, give back `released` of the key's
    reservation in the same transaction, before reserve() reads the key back to explain the refusal.

    On Postgres (READ COMMITTED) the read after a failed UPDATE sees what other transactions
    committed meanwhile; a call closing in that gap is this race. Doing the key's half of that
    close (apikeys.settle_spend's UPDATE) from the engine's event hook makes it happen at exactly
    that point, every time, on both backends.
    """
    engine = db.engine

    def after(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE API_KEY") and cursor.rowcount == 0:
            other = conn.connection.dbapi_connection.cursor()
            other.execute(f"UPDATE api_key SET held = held - {int(released)} WHERE id = {int(key_id)}")
            other.close()

    event.listen(engine, "after_cursor_execute", after)
    return lambda: event.remove(engine, "after_cursor_execute", after)


@pytest.mark.parametrize("limits, names", [
    ({"spend_cap_total": 1_000}, ["$0.001 total cap"]),
    ({"spend_cap_monthly": 1_000}, ["$0.001 cap for"]),
    ({"spend_cap_total": 1_000, "spend_cap_monthly": 1_200}, ["$0.001 total cap", "$0.0012 cap for"]),
])
def test_a_refusal_raced_by_a_settlement_is_still_a_clear_refusal(app, limits, names):
    key_id, _ = issue(**limits)
    in_flight = reserve(key_id, 800)
    stop = settles_during_the_refusal(key_id, 800)
    try:
        with pytest.raises(SpendCapReached) as refused:
            reserve(key_id, 500)  # refused by the UPDATE, though by the time of the re-read it would fit
    finally:
        stop()
    # The hook's UPDATE was rolled back with the refused transaction; the call it stood for now
    # closes for real, as its own transaction did.
    settle(key_id, in_flight, None)
    message = str(refused.value)
    assert message.startswith("this key's ") and "while its other calls were in flight" in message, message
    assert "None" not in message and "$0.0005" in message, message
    for name in names:
        assert name in message, message


# --- limits and housekeeping -----------------------------------------------------------------------

def test_set_limits_stores_each_limit(app):
    make_model("echo-1")
    make_model("echo-2")
    expires = utcnow() + timedelta(days=3)
    key_id, _ = issue(allowed_models=["echo-2", "echo-1", "echo-2"], ip_allowlist="203.0.113.9/24,\n ::1 \n",
                      spend_cap_total=5_000, spend_cap_monthly=2_000, expires_at=expires)
    key = key_row(key_id)
    assert key.allowed_models == '["echo-1", "echo-2"]'
    assert key.ip_allowlist == "203.0.113.0/24\n::1/128"
    assert (key.spend_cap_total, key.spend_cap_monthly) == (5_000, 2_000)
    assert key.expires_at == expires
    with atomic():
        apikeys.set_limits(db.session.get(ApiKey, key_id), apikeys.Limits())  # None lifts every limit
    key = key_row(key_id)
    assert (key.allowed_models, key.ip_allowlist, key.spend_cap_total, key.spend_cap_monthly, key.expires_at) \
        == (None, None, None, None, None)


@pytest.mark.parametrize("limits, field", [
    ({"allowed_models": ["echo-1", "nope"]}, "allowed_models"),
    ({"allowed_models": ["off-1"]}, "allowed_models"),  # disabled models cannot be allowed
    ({"ip_allowlist": "203.0.113.0/24\nsomewhere"}, "ip_allowlist"),
    ({"ip_allowlist": "203.0.113.0/33"}, "ip_allowlist"),
    ({"spend_cap_total": 0}, "spend_cap_total"),
    ({"spend_cap_total": -1}, "spend_cap_total"),
    ({"spend_cap_monthly": 0}, "spend_cap_monthly"),
    ({"spend_cap_monthly": -5}, "spend_cap_monthly"),
    ({"expires_at": datetime(2000, 1, 1, tzinfo=timezone.utc)}, "expires_at"),
])
def test_set_limits_refuses_bad_values_and_changes_nothing(app, limits, field):
    make_model("echo-1")
    make_model("off-1")
    with atomic():
        catalog.find_model("off-1").enabled = False
    key_id, _ = issue(spend_cap_total=7_000)
    with pytest.raises(InvalidInput) as refused, atomic():
        apikeys.set_limits(db.session.get(ApiKey, key_id), apikeys.Limits(**limits))
    assert refused.value.field == field
    key = key_row(key_id)
    assert (key.allowed_models, key.ip_allowlist, key.spend_cap_total) == (None, None, 7_000)


def test_an_expiry_of_now_is_in_the_past(app, monkeypatch):
    moment = datetime(2031, 5, 17, 12, 0, tzinfo=timezone.utc)
    at(monkeypatch, moment)
    key_id, _ = issue()
    with pytest.raises(InvalidInput, match="future"), atomic():
        apikeys.set_limits(db.session.get(ApiKey, key_id), apikeys.Limits(expires_at=moment))
    with atomic():
        apikeys.set_limits(db.session.get(ApiKey, key_id),
                           apikeys.Limits(expires_at=moment + timedelta(microseconds=1)))


def test_a_cap_of_one_micro_dollar_is_a_cap(app):
    key_id, _ = issue(spend_cap_total=1, spend_cap_monthly=1)
    assert (key_row(key_id).spend_cap_total, key_row(key_id).spend_cap_monthly) == (1, 1)


def test_rename(app):
    key_id, _ = issue(name="old")
    with atomic():
        apikeys.rename(db.session.get(ApiKey, key_id), "  new  ")
    assert key_row(key_id).name == "new"
    for bad in ("", "   ", "x" * (apikeys.MAX_NAME_LENGTH + 1)):
        with pytest.raises(InvalidInput), atomic():
            apikeys.rename(db.session.get(ApiKey, key_id), bad)
    assert key_row(key_id).name == "new"


def test_find_for_finds_only_the_users_own_keys(app):
    owner, stranger = make_user("owner@example.com"), make_user("stranger@example.com")
    key_id, _ = issue(owner)
    assert apikeys.find_for(db.session.get(User, owner.id), key_id).id == key_id
    with pytest.raises(NotFound):
        apikeys.find_for(db.session.get(User, stranger.id), key_id)


def test_revoke_keeps_the_first_time_and_revoke_all_counts_live_keys(app):
    user = make_user()
    first, _ = issue(user, "a")
    issue(user, "b")
    issue(user, "c")
    with atomic():
        apikeys.revoke(db.session.get(ApiKey, first))
    revoked_at = key_row(first).revoked_at
    with atomic():
        apikeys.revoke(db.session.get(ApiKey, first))
    assert key_row(first).revoked_at == revoked_at
    with atomic():
        assert apikeys.revoke_all(db.session.get(User, user.id)) == 2
    with atomic():
        assert apikeys.revoke_all(db.session.get(User, user.id)) == 0
    assert key_row(first).revoked_at == revoked_at
    assert all(k.revoked_at is not None for k in db.session.scalars(select(ApiKey)))


def test_list_for_shows_live_keys_first(app):
    user = make_user()
    old, _ = issue(user, "old")
    issue(user, "revoked")
    issue(user, "new")
    with atomic():
        revoked = db.session.scalar(select(ApiKey).where(ApiKey.name == "revoked"))
        apikeys.revoke(revoked)
        db.session.get(ApiKey, old).created_at = utcnow() - timedelta(days=1)
    assert [k.name for k in apikeys.list_for(db.session.get(User, user.id))] == ["new", "old", "revoked"]
