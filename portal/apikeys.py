"""API keys: issued once in plaintext, stored only as a SHA-256 hash, looked up by that hash.

Keys carry ~238 bits of randomness, so a fast hash is safe and keeps authentication on the
proxy's hot path to one indexed lookup; the `tg_` prefix makes leaked keys easy to scan for.
"""
import hashlib
import secrets
import string
from typing import Optional

from sqlalchemy import select

from .errors import (AccountNotVerified, AccountSuspended, InvalidInput, KeyExpired, KeyRevoked,
                     UnknownKey)
from .extensions import db
from .models import ApiKey, User, UserStatus, utcnow

PREFIX = "tg_"
_ALPHABET = string.ascii_letters + string.digits
_BODY_LENGTH = 40
MAX_NAME_LENGTH = 100


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


def authenticate(plaintext: Optional[str]) -> ApiKey:
    """Return the usable key for `plaintext`, or raise the KeyRejected subclass saying why not."""
    if not plaintext or not plaintext.startswith(PREFIX):
        raise UnknownKey("missing or malformed API key")
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if key is None:
        raise UnknownKey("unknown API key")
    if key.revoked_at is not None:
        raise KeyRevoked("this API key has been revoked")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise KeyExpired("this API key has expired")
    user = key.user
    if user.status != UserStatus.ACTIVE.value:
        raise AccountSuspended(f"this account is {user.status}")
    if not user.is_verified:
        raise AccountNotVerified("verify your email address before using API keys")
    return key


def revoke(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
