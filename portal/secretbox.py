"""Upstream credentials encrypted at rest (Fernet: AES-128-CBC with an HMAC-SHA256, versioned tokens).

The keys come from UPSTREAM_KEYS_SECRET: one Fernet key, or several separated by commas while
rotating (the first encrypts, every one decrypts; `flask upstreams rotate-keys` re-encrypts what
is stored under the first). Unset, one key is derived from SECRET_KEY with HKDF-SHA256, so a
fresh install needs no extra setting; but then changing SECRET_KEY makes the stored credentials
unreadable until they are entered again. The key derived from SECRET_KEY always decrypts too, so
moving from it to an UPSTREAM_KEYS_SECRET of your own only needs the rotate command afterwards.

`EncryptedText` is the column type: the ORM sees plaintext, the database only ciphertext. A value
that cannot be decrypted loads as an `Unreadable` (never an exception, so the console can still
list and replace it), and the proxy refuses to use it with a clear operator-facing log line.
"""
import base64
import binascii
import logging
from functools import lru_cache
from typing import Iterable, Optional, Union

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy.types import Text, TypeDecorator

log = logging.getLogger(__name__)

SETTING = "UPSTREAM_KEYS_SECRET"
_HKDF_SALT = b"tollgate upstream credentials"
_HKDF_INFO = b"fernet key v1"
# Every Fernet token starts with version byte 0x80, which is "gAAAAA" in urlsafe base64.
_TOKEN_PREFIX = "gAAAAA"


class SecretBoxError(ValueError):
    """A setting that is not a usable key, or a value that cannot be decrypted with the keys."""


class Unreadable(str):
    """A stored credential none of the keys decrypts: its ciphertext, marked.

    It stays a str so loading, listing and replacing work; `is_unreadable` tells the proxy and
    the console apart from a real credential. Its text is ciphertext, never the secret.
    """

    __slots__ = ()


def is_unreadable(value) -> bool:
    return isinstance(value, Unreadable)


UNREADABLE_HELP = (f"the stored upstream credential cannot be decrypted: {SETTING} (or SECRET_KEY, when {SETTING} "
                   "is unset) is not the one it was saved under. Restore that setting, or enter the credential "
                   "again in the console (Upstreams > Edit) or with `flask upstreams update NAME --api-key -`.")


def parse_keys(raw: Union[str, Iterable[str], None]) -> tuple[str, ...]:
    """The Fernet keys of an UPSTREAM_KEYS_SECRET value, checked; () when unset. SecretBoxError names the bad one."""
    if raw is None:
        return ()
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    keys = tuple(p.strip() for p in parts if p and p.strip())
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, binascii.Error, TypeError):
            raise SecretBoxError(
                f"{SETTING}: key {number} of {len(keys)} is not a Fernet key (32 bytes in urlsafe base64, 44 "
                "characters); generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'") from None
    return keys


def derived_key(secret_key: str) -> str:
    """The Fernet key HKDF-SHA256 derives from SECRET_KEY (used when UPSTREAM_KEYS_SECRET is unset)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw).decode()


@lru_cache(maxsize=8)
def _box(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    chain = list(keys)
    fallback = derived_key(secret_key) if secret_key else None
    if fallback and fallback not in chain:
        chain.append(fallback)
    if not chain:
        raise SecretBoxError(f"no key to encrypt upstream credentials with: set {SETTING} or SECRET_KEY")
    return MultiFernet([Fernet(k) for k in chain])


def box(config=None) -> MultiFernet:
    """The MultiFernet for `config` (the current app's by default): encrypts with the first key."""
    config = current_app.config if config is None else config
    return _box(parse_keys(config.get(SETTING)), config.get("SECRET_KEY") or "")


def looks_encrypted(value: Optional[str]) -> bool:
    """A Fernet token by its shape (whatever key made it); plaintext provider keys never look like one."""
    if not value or not value.startswith(_TOKEN_PREFIX) or len(value) < 100:
        return False
    try:
        return base64.urlsafe_b64decode(value.encode())[:1] == b"\x80"
    except (binascii.Error, ValueError):
        return False


def encrypt(plaintext: str, config=None) -> str:
    return box(config).encrypt(plaintext.encode()).decode()


def decrypt(token: str, config=None) -> str:
    """The plaintext of `token`, or SecretBoxError (the message never contains the value)."""
    try:
        return box(config).decrypt(token.encode()).decode()
    except (InvalidToken, UnicodeDecodeError, binascii.Error, ValueError):
        raise SecretBoxError(UNREADABLE_HELP) from None


def rotate(token: str, config=None) -> str:
    """`token` re-encrypted under the first key (SecretBoxError if no key decrypts it)."""
    try:
        return box(config).rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretBoxError(UNREADABLE_HELP) from None


class EncryptedText(TypeDecorator):
    """Text the application reads and writes in the clear and the database stores as a Fernet token."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or value == "":
            return None
        if isinstance(value, Unreadable):
            return str(value)  # kept as it was stored: it is already a token
        return encrypt(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if not looks_encrypted(value):
            # Written before encryption (migration 0011 encrypts these); still the credential.
            return value
        try:
            return decrypt(value)
        except SecretBoxError:
            log.error("an upstream credential in the database cannot be decrypted: %s", UNREADABLE_HELP)
            return Unreadable(value)
