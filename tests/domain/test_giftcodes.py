"""Gift codes: made by the operator (printed once, stored hashed), redeemed once, throttled."""
import hashlib
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from portal import giftcodes, ledger
from portal.database import atomic
from portal.errors import DomainError
from portal.extensions import db
from portal.models import Account, EntryKind, GiftCode, LedgerEntry, User, utcnow
from tests.domain.test_concurrency import race
from tests.factories import make_user

CODE = re.compile(r"TG(-[0-9A-HJKMNP-TV-Z]{4}){4}")
KNOWN = "TG-0011-ABCD-EFGH-JKMN"  # a code with the characters people mistype


def account(user) -> Account:
    db.session.rollback()  # end the read snapshot; see the rows as committed now
    return db.session.get(Account, user.account.id)


def make_codes(amount=5_000_000, count=1, **kwargs) -> list[str]:
    with atomic():
        return giftcodes.create(amount, count, **kwargs)


def known_code(amount=2_000_000, **kwargs) -> str:
    """KNOWN stored as create() stores codes (create's own codes are random)."""
    with atomic():
        db.session.add(GiftCode(code_hash=giftcodes.hash_code(KNOWN), hint=giftcodes.hint(KNOWN), amount=amount,
                                **kwargs))
    return KNOWN


def redeem(user, typed, ip=None):
    with atomic():
        return giftcodes.redeem(db.session.get(User, user.id), typed, ip)


def credits(user) -> list[tuple[str, int, str, str]]:
    return [tuple(r) for r in db.session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.reference, LedgerEntry.memo)
        .where(LedgerEntry.account_id == user.account.id).order_by(LedgerEntry.id))]


# --- creating ------------------------------------------------------------------------------------

def test_create_returns_distinct_codes_and_stores_only_their_hashes(app):
    codes = make_codes(5_000_000, 20)
    assert len(set(codes)) == 20 and all(CODE.fullmatch(c) for c in codes)
    rows = db.session.scalars(select(GiftCode).order_by(GiftCode.id)).all()
    assert [r.code_hash for r in rows] == [hashlib.sha256(c.encode()).hexdigest() for c in codes]
    assert [r.hint for r in rows] == [f"TG-…{c[-4:]}" for c in codes]
    stored = " ".join(str(v) for r in rows for v in vars(r).values())
    assert not any(c in stored or c.replace("-", "") in stored for c in codes)
    assert all((r.amount, r.counts_as_topup, r.expires_at, r.redeemed_at) == (5_000_000, False, None, None)
               for r in rows)


@pytest.mark.parametrize("amount, count, expires_at, message", [
    (0, 1, None, "worth more than"),
    (-5, 1, None, "worth more than"),
    (1.5, 1, None, "worth more than"),
    (1_000, 0, None, "count must be between 1 and 1000"),
    (1_000, 1001, None, "count must be between 1 and 1000"),
    (1_000, 1, datetime(2020, 1, 1, tzinfo=timezone.utc), "in the future"),
    (1_000, 1, datetime(2999, 1, 1), "in the future"),  # naive: refused rather than guessed
])
def test_create_refuses_bad_input_and_makes_nothing(app, amount, count, expires_at, message):
    with pytest.raises(DomainError, match=message), atomic():
        giftcodes.create(amount, count, expires_at)
    assert db.session.scalars(select(GiftCode)).all() == []


def test_cli_prints_each_code_once_and_a_summary(app, cli):
    result = cli("codes", "create", "12.50", "--count", "3", "--expires", "2999-12-31", "--counts-as-topup")
    assert result.exit_code == 0, result.output
    codes = result.stdout.split()
    assert len(codes) == 3 and all(CODE.fullmatch(c) for c in codes)  # stdout holds the codes alone
    assert ("created 3 gift code(s) of $12.50 each, expiring 3000-01-01 00:00 UTC, counting as a top-up"
            in result.stderr)
    rows = db.session.scalars(select(GiftCode)).all()
    assert {r.code_hash for r in rows} == {giftcodes.hash_code(c) for c in codes}
    assert all((r.amount, r.counts_as_topup, r.expires_at) == (12_500_000, True, datetime(3000, 1, 1, tzinfo=timezone.utc))
               for r in rows)


@pytest.mark.parametrize("args, message", [
    (["0"], "worth more than $0"),
    (["abc"], "must be a non-negative decimal"),
    (["5", "--count", "1001"], "1001 is not in the range 1<=x<=1000"),
    (["5", "--expires", "next week"], "--expires must be an ISO 8601 date or moment"),
    (["5", "--expires", "2001-01-01T00:00:00+02:00"], "in the future"),
])
def test_cli_refuses_bad_input(app, cli, args, message):
    result = cli("codes", "create", *args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert db.session.scalars(select(GiftCode)).all() == []


def test_cli_reads_an_expiry_without_offset_as_utc(app, cli):
    assert cli("codes", "create", "1", "--expires", "2999-06-01T12:30").exit_code == 0
    assert db.session.scalar(select(GiftCode.expires_at)) == datetime(2999, 6, 1, 12, 30, tzinfo=timezone.utc)


# --- redeeming -----------------------------------------------------------------------------------

def test_a_code_credits_once(app):
    user, other = make_user(), make_user("other@example.com")
    code, = make_codes(5_000_000)
    entry = redeem(user, code)
    row = db.session.scalar(select(GiftCode))
    assert (entry.amount, entry.kind, entry.reference) == (5_000_000, "grant", f"giftcode:{row.id}")
    assert (row.redeemed_by, row.redeemed_at is not None) == (user.account.id, True)
    assert giftcodes.describe(entry.amount) == "Added $5.00 to your balance."
    with pytest.raises(giftcodes.CodeAlreadyUsed, match="You have already redeemed this gift code"):
        redeem(user, code)
    with pytest.raises(giftcodes.CodeAlreadyUsed, match="This gift code has already been used"):
        redeem(other, code)
    assert account(user).balance == 5_000_000 and account(other).balance == 0
    assert credits(user) == [("grant", 5_000_000, f"giftcode:{row.id}", f"Gift code TG-…{code[-4:]}")]


@pytest.mark.parametrize("typed, message", [
    ("TG-ZZZZ-ZZZZ-ZZZZ-ZZZZ", "This gift code was not recognised"),
    ("TG-0011", "That is not a gift code: they look like TG-XXXX-XXXX-XXXX-XXXX."),
    ("TG-UUUU-ABCD-EFGH-JKMN", "That is not a gift code"),
    ("x" * 500, "That is not a gift code"),
])
def test_unknown_and_malformed_codes_are_refused(app, typed, message):
    user = make_user()
    known_code()
    with pytest.raises(giftcodes.UnknownCode, match=message):
        redeem(user, typed)
    assert account(user).balance == 0


def test_an_expired_code_is_refused_and_stays_unredeemed(app):
    user = make_user()
    code, = make_codes(expires_at=utcnow() + timedelta(days=1))
    with atomic():
        db.session.execute(update(GiftCode).values(expires_at=datetime(2026, 1, 2, tzinfo=timezone.utc)))
    with pytest.raises(giftcodes.CodeExpired, match="This gift code expired on 2026-01-02."):
        redeem(user, code)
    assert account(user).balance == 0 and db.session.scalar(select(GiftCode.redeemed_at)) is None


def test_a_code_before_its_expiry_works(app):
    user = make_user()
    code, = make_codes(expires_at=utcnow() + timedelta(minutes=5))
    assert redeem(user, code).amount == 5_000_000


@pytest.mark.parametrize("verified, status, message", [
    (False, "active", "Confirm your email address"),
    (True, "suspended", "This account is suspended"),
    (True, "terminated", "This account is terminated"),
])
def test_only_an_active_verified_account_can_redeem(app, verified, status, message):
    user = make_user(verified=verified)
    with atomic():
        db.session.get(User, user.id).status = status
    code, = make_codes()
    with pytest.raises(giftcodes.CannotRedeem, match=message):
        redeem(user, code)
    assert db.session.scalar(select(GiftCode.redeemed_at)) is None and account(user).balance == 0


def test_a_code_that_counts_as_a_topup_moves_the_expiry(app):
    user = make_user()
    code, = make_codes(counts_as_topup=True)
    before = utcnow()
    redeem(user, code)
    acct = account(user)
    assert acct.last_topup_at >= before
    assert acct.credits_expire_at == ledger.expiry_after(acct.last_topup_at)
    assert credits(user)[0][0] == EntryKind.GRANT.value  # still a grant: not paid money


def test_a_plain_code_leaves_the_expiry_alone(app):
    user = make_user()
    code, = make_codes()
    redeem(user, code)
    acct = account(user)
    assert (acct.balance, acct.last_topup_at, acct.credits_expire_at) == (5_000_000, None, None)


@pytest.mark.parametrize("typed", [
    KNOWN,
    "tg-0011-abcd-efgh-jkmn",
    "  TG 0011 ABCD EFGH JKMN  ",
    "0011ABCDEFGHJKMN",
    "0011-abcd-efgh-jkmn",
    "TG-OOIL-ABCD-EFGH-JKMN",        # O for 0, I and L for 1
    "tg-ooil-abcd-efgh-jkmn",
    "TG–0011—ABCD‐EFGH-JKMN",         # dashes a word processor makes
    "ＴＧ－００１１－ＡＢＣＤ－ＥＦＧＨ－ＪＫＭＮ",  # full-width, as some keyboards type
])
def test_normalise_reads_codes_as_people_type_them(typed):
    assert giftcodes.normalise(typed) == KNOWN


@pytest.mark.parametrize("typed", ["", "TG-0011-ABCD-EFGH", "TG-0011-ABCD-EFGH-JKMN-P", "TG-U011-ABCD-EFGH-JKMN",
                                   "XX-0011-ABCD-EFGH-JKMN"])
def test_normalise_refuses_what_cannot_be_a_code(typed):
    assert giftcodes.normalise(typed) is None


def test_a_code_typed_loosely_is_redeemed(app):
    user = make_user()
    known_code()
    assert redeem(user, " tg ooil abcd efgh jkmn ").amount == 2_000_000


# --- racing --------------------------------------------------------------------------------------

def test_eight_concurrent_redemptions_of_one_code_credit_once(app):
    users = [make_user(f"racer{i}@example.com") for i in range(8)]
    code, = make_codes(5_000_000)
    waiting = [u.id for u in users]

    def attempt():
        with atomic():
            return giftcodes.redeem(db.session.get(User, waiting.pop()), code)  # list.pop is atomic

    outcomes = race(app, 8, attempt)
    won = [o for o in outcomes if isinstance(o, ledger.Entry)]
    lost = [o for o in outcomes if isinstance(o, giftcodes.CodeAlreadyUsed)]
    assert (len(won), len(lost)) == (1, 7), outcomes
    assert sorted(account(u).balance for u in users) == [0] * 7 + [5_000_000]
    assert db.session.scalar(select(GiftCode.redeemed_by)) == won[0].account_id
    assert len(db.session.scalars(select(LedgerEntry)).all()) == 1
    assert ledger.verify() == []


# --- throttling ----------------------------------------------------------------------------------

def test_failed_attempts_are_throttled_per_user(app):
    user, other = make_user(), make_user("other@example.com")
    code, = make_codes()
    for i in range(giftcodes.ATTEMPTS_PER_USER):
        with pytest.raises(giftcodes.UnknownCode):
            redeem(user, f"TG-AAAA-AAAA-AAAA-AAA{i}")
    with pytest.raises(giftcodes.TooManyAttempts, match=r"Too many gift code attempts. Try again in 60 minutes."):
        redeem(user, code)  # even the right code waits
    assert db.session.scalar(select(GiftCode.redeemed_at)) is None
    assert redeem(other, code).amount == 5_000_000  # another user is not held back


def test_failed_attempts_are_throttled_per_address(app):
    users = [make_user(f"p{i}@example.com") for i in range(4)]
    for user in users[:3]:  # 3 x 10 = the address's 30
        for _ in range(giftcodes.ATTEMPTS_PER_USER):
            with pytest.raises(giftcodes.UnknownCode):
                redeem(user, "TG-AAAA-AAAA-AAAA-AAAA", ip="203.0.113.9")
    with pytest.raises(giftcodes.TooManyAttempts):
        redeem(users[3], "TG-AAAA-AAAA-AAAA-AAAA", ip="203.0.113.9")
    with pytest.raises(giftcodes.UnknownCode):  # the same person from elsewhere
        redeem(users[3], "TG-AAAA-AAAA-AAAA-AAAA", ip="198.51.100.7")


def test_a_code_that_works_counts_against_no_one(app):
    user = make_user()
    codes = make_codes(1_000, 2)
    for _ in range(giftcodes.ATTEMPTS_PER_USER - 1):
        with pytest.raises(giftcodes.UnknownCode):
            redeem(user, "TG-AAAA-AAAA-AAAA-AAAA")
    redeem(user, codes[0])
    with pytest.raises(giftcodes.UnknownCode):  # the tenth failure: still within the limit
        redeem(user, "TG-AAAA-AAAA-AAAA-AAAA")
    with pytest.raises(giftcodes.TooManyAttempts):
        redeem(user, codes[1])
