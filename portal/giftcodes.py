"""Gift codes: the operator creates them, a user redeems one for credit, exactly once.

A code is "TG-" and 16 characters of Crockford base32 (80 random bits): no I, L, O or U, so
what a person reads off a card is what they type, and look-alikes they type anyway (O for 0,
I or L for 1) are read as meant. Only the SHA-256 of the canonical form is stored; the plaintext
is printed once, when the code is made. 80 bits is far beyond guessing, so a fast hash is safe.

Redemption is one conditional UPDATE of the code's row (not yet redeemed, not expired) whose
result decides, followed by the credit in the same transaction: of any number of concurrent
redemptions exactly one finds the row unredeemed and credits; the rest change nothing.
"""
import hashlib
import re
import secrets
import unicodedata
from datetime import datetime
from typing import Optional

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_ngettext
from sqlalchemy import bindparam, or_, select

from . import i18n, ledger, ratelimit
from .errors import DomainError, InvalidAmount, InvalidInput
from .extensions import db
from .models import EntryKind, GiftCode, User, UserStatus, utcnow
from .ratelimit import Limit

PREFIX = "TG"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
BODY_LENGTH = 16  # 16 x 5 = 80 bits
LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
MAX_COUNT = 1000
# Redemption attempts that failed (a successful one is given back): per user and per address.
ATTEMPTS_PER_USER = 10
ATTEMPTS_PER_IP = 30
ATTEMPT_WINDOW = 3600
SHAPE = "TG-XXXX-XXXX-XXXX-XXXX"


class CodeRefused(DomainError):
    """A gift code cannot be redeemed; the subclass says why.

    `str()` is the English for the log and the CLI; `message` says it to the person, in the
    language of the request it is shown in (a lazy string: read it where it is shown).
    """

    def __init__(self, log: str, message=None):
        super().__init__(log)
        self.message = message if message is not None else log


class UnknownCode(CodeRefused):
    pass


class CodeAlreadyUsed(CodeRefused):
    pass


class CodeExpired(CodeRefused):
    pass


class CannotRedeem(CodeRefused):
    """The user's account may not redeem codes (unverified, suspended, terminated)."""


class TooManyAttempts(CodeRefused):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        minutes = max(1, -(-retry_after // 60))
        super().__init__(f"Too many gift code attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                         lazy_ngettext("Too many gift code attempts. Try again in %(num)d minute.",
                                       "Too many gift code attempts. Try again in %(num)d minutes.", minutes))


class _Day:
    """A day written when the message is, in the language it is read in (portal.i18n.day)."""

    def __init__(self, moment: datetime):
        self.moment = moment

    def __str__(self) -> str:
        from .i18n import day
        return day(self.moment)


def _format(body: str) -> str:
    return "-".join([PREFIX] + [body[i:i + 4] for i in range(0, BODY_LENGTH, 4)])


def hash_code(canonical: str) -> str:
    """What is stored of a code: the SHA-256 of its canonical form."""
    return hashlib.sha256(canonical.encode()).hexdigest()


def hint(canonical: str) -> str:
    """Enough of a code to tell it apart on a statement, not enough to use it."""
    return f"{PREFIX}-…{canonical[-4:]}"


def normalise(typed: str) -> Optional[str]:
    """The canonical form of a code as a person typed it, or None when it cannot be one.

    Case, spaces, dashes of any kind and the prefix are optional; O is read as 0, I and L as 1.
    """
    if not typed or len(typed) > 200:
        return None
    letters = re.sub(r"[^0-9A-Z]", "", unicodedata.normalize("NFKC", typed).upper())
    if len(letters) == BODY_LENGTH + len(PREFIX) and letters.startswith(PREFIX):
        letters = letters[len(PREFIX):]
    body = letters.translate(LOOK_ALIKES)
    if len(body) != BODY_LENGTH or any(c not in ALPHABET for c in body):
        return None
    return _format(body)


def create(amount: int, count: int = 1, expires_at: Optional[datetime] = None,
           counts_as_topup: bool = False) -> list[str]:
    """Make `count` codes worth `amount` micro-USD each; the plaintexts are returned here only."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidAmount("a gift code must be worth more than $0")
    if not 1 <= count <= MAX_COUNT:
        raise InvalidInput(f"count must be between 1 and {MAX_COUNT}", "count")
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= utcnow()):
        raise InvalidInput("the expiry must be a moment in the future", "expires")
    codes = [_format("".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))) for _ in range(count)]
    db.session.add_all(GiftCode(code_hash=hash_code(c), hint=hint(c), amount=amount, expires_at=expires_at,
                                counts_as_topup=counts_as_topup) for c in codes)
    db.session.flush()
    return codes


_code = GiftCode.__table__
_CLAIM = (_code.update()
          .where(_code.c.code_hash == bindparam("digest"), _code.c.redeemed_at.is_(None),
                 or_(_code.c.expires_at.is_(None), _code.c.expires_at > bindparam("now")))
          .values(redeemed_at=bindparam("now"), redeemed_by=bindparam("account"))
          .returning(_code.c.id, _code.c.amount, _code.c.counts_as_topup, _code.c.hint))


def _refusal(code_hash: str, account_id: int) -> CodeRefused:
    """Why the claim found nothing to update (read after it, so the answer is current)."""
    row = db.session.execute(select(_code.c.redeemed_at, _code.c.redeemed_by, _code.c.expires_at)
                             .where(_code.c.code_hash == code_hash)).first()
    if row is None:
        return UnknownCode("This gift code was not recognised. Check it and try again.",
                           _l("This gift code was not recognised. Check it and try again."))
    if row.redeemed_at is not None:
        if row.redeemed_by == account_id:
            return CodeAlreadyUsed("You have already redeemed this gift code.",
                                   _l("You have already redeemed this gift code."))
        return CodeAlreadyUsed("This gift code has already been used.", _l("This gift code has already been used."))
    return CodeExpired(f"This gift code expired on {row.expires_at:%Y-%m-%d}.",
                       _l("This gift code expired on %(day)s.", day=_Day(row.expires_at)))


def _limits(user: User, ip: Optional[str]) -> list[Limit]:
    limits = [Limit(f"giftcode:user:{user.id}", ATTEMPTS_PER_USER, ATTEMPT_WINDOW)]
    if ip:
        limits.append(Limit(f"giftcode:ip:{ip}", ATTEMPTS_PER_IP, ATTEMPT_WINDOW))
    return limits


def redeem(user: User, typed: str, ip: Optional[str] = None) -> ledger.Entry:
    """Credit the code's amount to `user` once, or raise a CodeRefused saying why; inside `atomic()`.

    A code that counts as a top-up moves the credits' expiry as a paid top-up does; the money is
    still a grant, not a payment (nothing of it is refundable as paid money).
    """
    if not user.is_verified:
        raise CannotRedeem("Confirm your email address before redeeming a gift code.",
                           _l("Confirm your email address before redeeming a gift code."))
    if user.status != UserStatus.ACTIVE.value:
        raise CannotRedeem(f"This account is {user.status}; gift codes cannot be redeemed.",
                           _l("Gift codes cannot be redeemed on a suspended or closed account."))
    limits = _limits(user, ip)
    # Taken before the code is looked at, so parallel guesses are counted too.
    wait = ratelimit.take(*limits)
    if wait is not None:
        raise TooManyAttempts(wait)
    canonical = normalise(typed)
    if canonical is None:
        raise UnknownCode(f"That is not a gift code: they look like {SHAPE}.",
                          _l("Enter the code as you were given it: it looks like %(shape)s.", shape=SHAPE))
    account_id, now, code_hash = user.account.id, utcnow(), hash_code(canonical)
    claimed = db.session.execute(_CLAIM, {"digest": code_hash, "now": now, "account": account_id}).first()
    if claimed is None:
        raise _refusal(code_hash, account_id)
    entry = ledger.credit(account_id, claimed.amount, EntryKind.GRANT, memo=f"Gift code {claimed.hint}",
                          reference=f"giftcode:{claimed.id}", topup_at=now if claimed.counts_as_topup else None)
    for limit in limits:  # a code that worked is not an attempt anyone should be limited by
        ratelimit.release(limit.key)
    return entry


def describe(amount: int) -> str:
    """The message for a successful redemption, in the reader's language."""
    return _("Added %(amount)s to your balance.", amount=i18n.usd(amount))
