"""A secret shown once on the page a 303 leads to (post/redirect/get): a new key's, new recovery codes.

It waits in the session for that one view: taking it removes it, so a reload shows nothing. The
session cookie is signed, not encrypted, so the secret goes in only as ciphertext (Fernet, with a
key derived from SECRET_KEY for this use), and an entry older than SECONDS is dropped unread: the
person saw the page or left.
"""
import base64
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, session

SECONDS = 600


@lru_cache(maxsize=4)
def _box(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tollgate shown once",
               info=b"fernet key v1").derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def keep(entry: str, value) -> None:
    """Keep `value` (JSON) encrypted in the session under `entry`, for the next `take`."""
    session[entry] = _box(current_app.config["SECRET_KEY"]).encrypt(json.dumps(value).encode()).decode()


def take(entry: str):
    """The value kept under `entry`, now gone from the session; None when none, or it is too old."""
    token = session.pop(entry, None)
    if not isinstance(token, str):
        return None
    try:
        return json.loads(_box(current_app.config["SECRET_KEY"]).decrypt(token.encode(), ttl=SECONDS))
    except (InvalidToken, ValueError):
        return None
