"""API keys: issued once in plaintext, stored only as a SHA-256 hash, looked up by that hash.

Keys carry ~238 bits of randomness, so a fast hash is safe and keeps authentication on the
proxy's hot path to one indexed lookup; the `tg_` prefix makes leaked keys easy to scan for.
"""
import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from sqlalchemy import bindparam, or_, select

from .errors import (AccountNotVerified, AccountSuspended, InvalidInput, KeyExpired, KeyRevoked,
                     UnknownKey)
from .extensions import db
from .models import Account, ApiKey, User, UserStatus, utcnow

PREFIX = "tg_"
_ALPHABET = string.ascii_letters + string.digits
_BODY_LENGTH = 40
MAX_NAME_LENGTH = 100
TOUCH_INTERVAL = timedelta(minutes=1)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def issue(user: User, name: str = "") -> tuple[ApiKey, str]:
    """Create a key for `user`; the plaintext is returned here and never stored or shown again."""
    if not user.is_verified:
        raise InvalidInput(f"{user.email} has not verified their email; keys need a verified account")
    if user.status != UserStatus.ACTIVE.value:
        raise InvalidInput(f"{user.email} is {user.status}; keys cannot be created")
    name = (name or "").strip() or "default"
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"key name must be at most {MAX_NAME_LENGTH} characters")
    plaintext = PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    key = ApiKey(user_id=user.id, name=name, key_hash=hash_key(plaintext),
                 hint=f"{PREFIX}…{plaintext[-4:]}")
    db.session.add(key)
    db.session.flush()
    return key, plaintext


@dataclass(frozen=True)
class Caller:
    """Who a valid key speaks for: all the proxy needs, from one indexed query."""

    key_id: int
    key_name: str
    hint: str
    user_id: int
    account_id: int


# Built once and run as Core on the session's connection: this is on every proxied call.
_key, _user, _account = ApiKey.__table__, User.__table__, Account.__table__
_AUTHENTICATE = (
    select(_key.c.id, _key.c.name, _key.c.hint, _key.c.revoked_at, _key.c.expires_at,
           _user.c.id.label("user_id"), _user.c.status, _user.c.is_verified, _account.c.id.label("account_id"))
    .join(_user, _user.c.id == _key.c.user_id).join(_account, _account.c.user_id == _user.c.id)
    .where(_key.c.key_hash == bindparam("key_hash"))
)
_TOUCH = (
    _key.update()
    .where(_key.c.id == bindparam("key_id"),
           or_(_key.c.last_used_at.is_(None), _key.c.last_used_at < bindparam("stale_before"),
               _key.c.last_used_ip.is_distinct_from(bindparam("ip"))))
    .values(last_used_at=bindparam("now"), last_used_ip=bindparam("ip"))
)


def authenticate(plaintext: Optional[str]) -> Caller:
    """Return who `plaintext` speaks for, or raise the KeyRejected subclass saying why not."""
    if not plaintext or not plaintext.startswith(PREFIX):
        raise UnknownKey("missing or malformed API key")
    row = db.session.connection().execute(_AUTHENTICATE, {"key_hash": hash_key(plaintext)}).first()
    if row is None:
        raise UnknownKey("unknown API key")
    if row.revoked_at is not None:
        raise KeyRevoked("this API key has been revoked")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise KeyExpired("this API key has expired")
    if row.status != UserStatus.ACTIVE.value:
        raise AccountSuspended(f"this account is {row.status}")
    if not row.is_verified:
        raise AccountNotVerified("verify your email address before using API keys")
    return Caller(row.id, row.name, row.hint, row.user_id, row.account_id)


def touch(key_id: int, ip: Optional[str]) -> None:
    """Record that a key was used, writing at most once a minute per key unless the IP changed."""
    now = utcnow()
    db.session.connection().execute(_TOUCH, {"key_id": key_id, "stale_before": now - TOUCH_INTERVAL, "ip": ip,
                                             "now": now})


def revoke(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
