"""People: creation, email normalisation, passwords, verification and suspension."""
import re
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .errors import AlreadyExists, InvalidInput, UnknownUser
from .extensions import db
from .models import Account, User, UserStatus, utcnow

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
        raise InvalidInput(f"{email!r} is not a valid email address")
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


def hash_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


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
    if user.status == UserStatus.TERMINATED.value:
        raise InvalidInput(f"{user.email} is terminated; it cannot be suspended")
    set_status(user, UserStatus.SUSPENDED, reason or "suspended by the operator")


def unsuspend(user: User) -> None:
    if user.status != UserStatus.SUSPENDED.value:
        raise InvalidInput(f"{user.email} is not suspended (status: {user.status})")
    set_status(user, UserStatus.ACTIVE)
