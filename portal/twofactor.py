"""TOTP two-factor authentication with single-use recovery codes."""
import hashlib
import hmac
import secrets
from typing import Optional

import pyotp
import segno
from sqlalchemy import select, update

from .errors import InvalidInput
from .extensions import db
from .models import RecoveryCode, User, utcnow

ISSUER = "Tollgate"
RECOVERY_CODES = 10


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg_data_uri(uri: str) -> str:
    return segno.make(uri, error="m").svg_data_uri(scale=4, border=2)


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").replace(" ", "").lower().encode()).hexdigest()


def _totp_ok(secret: str, code: str) -> bool:
    code = code.replace(" ", "")
    return code.isdigit() and pyotp.TOTP(secret).verify(code, valid_window=1)


def enable(user: User, secret: str, code: str) -> list[str]:
    """Turn 2FA on once the user proves their app has `secret`; returns recovery codes, shown once."""
    if user.totp_enabled_at is not None:
        raise InvalidInput("Two-factor authentication is already on.", field="code")
    if not _totp_ok(secret, code or ""):
        raise InvalidInput("That code does not match. Check the time on your phone and try the next code.",
                           field="code")
    user.totp_secret, user.totp_enabled_at = secret, utcnow()
    user.session_epoch += 1
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_code_hash(c)) for c in codes)
    return codes


def disable(user: User, code: str) -> None:
    if user.totp_enabled_at is None:
        return
    if not check(user, code):
        raise InvalidInput("That code is not valid.", field="code")
    user.totp_secret = user.totp_enabled_at = None
    user.session_epoch += 1
    db.session.execute(update(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                  RecoveryCode.used_at.is_(None)).values(used_at=utcnow()))


def check(user: User, code: Optional[str]) -> bool:
    """A current TOTP code, or an unused recovery code (which is then used up)."""
    code = (code or "").strip()
    if not code or user.totp_secret is None:
        return False
    if _totp_ok(user.totp_secret, code):
        return True
    wanted = _code_hash(code)
    for row in db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                             RecoveryCode.used_at.is_(None))):
        if hmac.compare_digest(row.code_hash, wanted):
            used = db.session.execute(update(RecoveryCode).where(RecoveryCode.id == row.id,
                                                                 RecoveryCode.used_at.is_(None))
                                      .values(used_at=utcnow()).execution_options(synchronize_session=False))
            return used.rowcount == 1
    return False


def recovery_codes_left(user: User) -> int:
    return len(db.session.scalars(select(RecoveryCode.id).where(RecoveryCode.user_id == user.id,
                                                                RecoveryCode.used_at.is_(None))).all())
