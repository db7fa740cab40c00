"""People: creation, email normalisation, passwords, verification and suspension."""
import hashlib
import re
from dataclasses import dataclass
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import lazy_gettext as _l  # messages people read; English outside a request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import apikeys, email_links, ledger, legal, links, logins, refunds
from .errors import AlreadyExists, InvalidInput, ReferenceConflict, UnknownUser
from .extensions import db
from .models import Account, EntryKind, Hold, HoldStatus, LegalDocument, TokenPurpose, User, UserStatus, utcnow
from .money import format_usd

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# Providers documented to ignore dots in the local part and to deliver "+tag" addresses to
# the same mailbox: one person, one address, one account.
_DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}
_PLUS_TAG_DOMAINS = {"gmail.com", "outlook.com", "hotmail.com", "live.com", "icloud.com",
                     "me.com", "fastmail.com", "proton.me", "protonmail.com"}
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def clean_email(email: str) -> str:
    """Trim and validate an email address as typed; raise InvalidInput when it cannot be one."""
    email = (email or "").strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput(f"{email!r} is not a valid email address", field="email")
    return email


def normalize_email(email: str) -> str:
    """The key for the one-account-per-person rule: case-folded, provider aliases removed."""
    local, _, domain = clean_email(email).lower().rpartition("@")
    domain = _DOTLESS_DOMAINS.get(domain, domain)
    if domain in _PLUS_TAG_DOMAINS:
        local = local.split("+", 1)[0]
    if domain == "gmail.com":
        local = local.replace(".", "")
    return f"{local}@{domain}"


def require_strong_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD_LENGTH} characters", field="password")


def hash_password(password: str) -> str:
    require_strong_password(password)
    return _hasher.hash(password)


# Verified against when no account matches, so a wrong address costs as long as a wrong password
# and response times do not tell which addresses have accounts.
_DUMMY_HASH = _hasher.hash("no account has this password")


def login_key(email: str) -> str:
    """The throttling key for an address as typed, valid or not."""
    try:
        return normalize_email(email)
    except InvalidInput:
        return (email or "").strip().lower()


def authenticate_password(email: str, password: str) -> Optional[User]:
    """The user whose address and password these are, or None, in the same time either way."""
    try:
        user = find_user(email)
    except (UnknownUser, InvalidInput):
        user = None
    if user is None or not user.password_hash:
        try:
            _hasher.verify(_DUMMY_HASH, password or "")
        except VerificationError:
            pass
        return None
    return user if check_password(user, password) else None


def check_password(user: User, password: str) -> bool:
    """True when `password` matches; rehashes transparently when the parameters have moved on."""
    if not user.password_hash:
        return False
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return True


def find_user(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email_normalized == normalize_email(email)))
    if user is None:
        raise UnknownUser(f"no user with email {email.strip()!r}")
    return user


def create_user(email: str, password: Optional[str] = None, *, admin: bool = False,
                verified: bool = False) -> User:
    """Create a user and their (empty) credit account; refuse a second account for the same person."""
    address = clean_email(email)
    user = User(email=address, email_normalized=normalize_email(address),
                password_hash=hash_password(password) if password is not None else None,
                is_admin=admin, is_verified=verified)
    user.account = Account()
    try:
        with db.session.begin_nested():
            db.session.add(user)
    except IntegrityError:
        raise AlreadyExists(f"an account for {address!r} already exists") from None
    return user


def set_status(user: User, status: UserStatus, reason: Optional[str] = None) -> None:
    user.status = status.value
    user.status_reason = reason
    user.status_changed_at = utcnow()


def suspend(user: User, reason: Optional[str]) -> None:
    """Suspend: keys refused at once (apikeys.authenticate reads the status), every session ended.

    The person may log in again, read-only (views/readonly.py). The operator's own action, with its
    audit entry and mail, is moderation.suspend; disputes (payments.py) come here directly.
    """
    if user.status == UserStatus.TERMINATED.value:
        raise InvalidInput(f"{user.email} is terminated; it cannot be suspended")
    set_status(user, UserStatus.SUSPENDED, reason or "suspended by the operator")
    logins.end_all(user)


def unsuspend(user: User) -> None:
    if user.status != UserStatus.SUSPENDED.value:
        raise InvalidInput(f"{user.email} is not suspended (status: {user.status})")
    set_status(user, UserStatus.ACTIVE)


@dataclass(frozen=True)
class Registration:
    """What a registration attempt did. The view answers the same either way (no enumeration)."""

    user: Optional[User]            # the new account, with `verify_token` to mail
    verify_token: Optional[str]
    existing: Optional[User]        # someone already owns this address: tell them, not the caller


def register(email: str, password: str, terms: LegalDocument, ip: Optional[str]) -> Registration:
    """Create an unverified account that accepted `terms`, or report that the person already has one."""
    address = clean_email(email)
    require_strong_password(password)
    existing = db.session.scalar(select(User).where(User.email_normalized == normalize_email(address)))
    if existing is not None:
        # The new-account path hashes the password; so does this one, or the quicker answer
        # would tell a caller that the address has an account.
        _hasher.hash(password)
        return Registration(None, None, existing)
    try:
        user = create_user(address, password)
    except AlreadyExists:  # a concurrent registration of the same person won the race
        return Registration(None, None, find_user(address))
    legal.accept(user, terms, ip)
    return Registration(user, email_links.issue(user, TokenPurpose.VERIFY), None)


def signup_credit_reference(email_normalized: str) -> str:
    """The ledger reference of a person's welcome credit: one per person, whichever account they hold.

    Keyed on the normalised address, hashed so the ledger does not keep the address of an account
    that was closed (and anonymised) later.
    """
    return "signup-credit:" + hashlib.sha256(email_normalized.encode()).hexdigest()


def verify_email(token: str, signup_credit: int = 0) -> User:
    """Mark the address verified; welcome credit comes with a person's first verified account only."""
    row = email_links.consume(token, TokenPurpose.VERIFY)
    user = db.session.get(User, row.user_id)
    user.is_verified = True
    if signup_credit:
        try:
            # The reference is unique in the ledger, so of two verifications racing for one
            # person only one inserts; the other finds the first entry and lands here.
            ledger.credit(user.account.id, signup_credit, EntryKind.GRANT, memo="welcome credit",
                          reference=signup_credit_reference(user.email_normalized))
        except ReferenceConflict:
            pass  # granted to an earlier (closed) account of the same person: once per person
    return user


def request_password_reset(email: str) -> Optional[tuple[User, str]]:
    """A reset token for the account behind `email`, or None (the view answers the same)."""
    try:
        user = find_user(email)
    except (UnknownUser, InvalidInput):
        return None
    if user.status == UserStatus.TERMINATED.value:
        return None
    return user, email_links.issue(user, TokenPurpose.RESET)


def reset_password(token: str, password: str) -> User:
    hashed = hash_password(password)
    row = email_links.consume(token, TokenPurpose.RESET)
    user = db.session.get(User, row.user_id)
    user.password_hash = hashed
    user.session_epoch += 1  # every other session ends
    return user


def change_password(user: User, current: str, new: str) -> None:
    if not check_password(user, current):
        raise InvalidInput(_l("Your current password is not correct."))
    user.password_hash = hash_password(new)
    user.session_epoch += 1


def request_email_change(user: User, new_email: str, password: str) -> str:
    if not check_password(user, password):
        raise InvalidInput(_l("Your password is not correct."), field="password")
    address = clean_email(new_email)
    taken = db.session.scalar(select(User.id).where(User.email_normalized == normalize_email(address),
                                                    User.id != user.id))
    if taken:
        raise AlreadyExists(_l("That address belongs to another account."))
    return email_links.issue(user, TokenPurpose.CHANGE_EMAIL, new_email=address)


@dataclass(frozen=True)
class EmailChange:
    user: User
    old_email: str  # to be told: if someone else changed it, the owner learns of it there


def confirm_email_change(token: str) -> EmailChange:
    """Make the confirmed new address the account's; every session of the account ends."""
    row = email_links.consume(token, TokenPurpose.CHANGE_EMAIL)
    user = db.session.get(User, row.user_id)
    old_email = user.email
    user.email, user.email_normalized = row.new_email, normalize_email(row.new_email)
    user.is_verified = True
    user.session_epoch += 1
    try:
        db.session.flush()
    except IntegrityError:
        raise AlreadyExists(_l("That address now belongs to another account.")) from None
    return EmailChange(user, old_email)


def close(user: User, password: str, with_refund: bool) -> None:
    """Close an account: keys revoked, address freed, books kept (ledger entries are never deleted).

    Money left on the account needs a refund request; it is never silently forfeited. A negative
    balance is a debt, and a call in flight may still change the balance: both refuse.
    """
    if not check_password(user, password):
        raise InvalidInput(_l("Your password is not correct."))
    # Read the balance and holds under a row lock (Postgres) so a call settling meanwhile waits.
    account = db.session.scalar(select(Account).where(Account.id == user.account.id).with_for_update()
                                .execution_options(populate_existing=True))
    open_holds = db.session.scalar(select(Hold.id).where(Hold.account_id == account.id,
                                                         Hold.status == HoldStatus.OPEN.value).limit(1))
    if account.held or open_holds is not None:
        raise InvalidInput(_l("A call is still in progress. Wait for it to finish (or revoke your API keys so no "
                              "new call starts), then close the account."))
    if account.balance < 0:
        raise InvalidInput(_l("Your balance is %(balance)s, which is owed, so the account cannot be closed yet. Top "
                              "up at least %(owed)s on the billing page (%(link)s), or write to us from the contact "
                              "page, then close it.", balance=format_usd(account.balance),
                              owed=format_usd(-account.balance), link=links.public_url("billing.index")))
    if account.balance > 0 and not with_refund:
        raise InvalidInput(_l("Your balance is not zero: tick 'Refund my balance' to close the account and ask for "
                              "a refund, or use up the balance first."))
    if account.balance > 0:
        refunds.request(user, "account closed", close_account=True)
    terminate(user, "closed by the user")


def terminate(user: User, reason: str) -> None:
    """End an account for good: keys revoked, sessions ended, address freed; the books stay."""
    if user.status == UserStatus.TERMINATED.value:
        return
    apikeys.revoke_all(user)
    logins.end_all(user)
    set_status(user, UserStatus.TERMINATED, reason)
    user.email = user.email_normalized = f"closed-{user.id}@invalid"
    user.password_hash = None
    user.totp_secret = user.totp_enabled_at = None
    user.session_epoch += 1
