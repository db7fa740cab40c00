"""TOTP two-factor authentication with single-use recovery codes."""
import hashlib
import hmac
import secrets
from typing import Optional

import pyotp
import segno
from flask_babel import lazy_gettext as _l  # messages people read; English outside a request
from sqlalchemy import or_, select, update

from . import sitesettings
from .errors import InvalidInput
from .extensions import db
from .models import RecoveryCode, User, utcnow

RECOVERY_CODES = 10


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=sitesettings.site_name())


def qr_svg_data_uri(uri: str) -> str:
    return segno.make(uri, error="m").svg_data_uri(scale=4, border=2)


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").replace(" ", "").lower().encode()).hexdigest()


def _totp_step(secret: str, code: str) -> Optional[int]:
    """The time step `code` belongs to, within one step of now (clock drift), or None."""
    code = code.replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = totp.timecode(utcnow())
    for step in (now - 1, now, now + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _use_step(user: User, step: int) -> bool:
    """Record `step` as used, unless it or a later one already was: a code works once.

    One conditional UPDATE, so of two requests racing with the same code only one gets the row.
    """
    used = db.session.execute(update(User).where(User.id == user.id, or_(User.totp_last_step.is_(None),
                                                                          User.totp_last_step < step))
                              .values(totp_last_step=step).execution_options(synchronize_session=False))
    return used.rowcount == 1


def enable(user: User, secret: str, code: str) -> list[str]:
    """Turn 2FA on once the user proves their app has `secret`; returns recovery codes, shown once."""
    if user.totp_enabled_at is not None:
        raise InvalidInput(_l("Two-factor authentication is already on."), field="code")
    step = _totp_step(secret, code or "")
    if step is None:
        raise InvalidInput(_l("That code does not match. Check the time on your phone and try the next code."),
                           field="code")
    user.totp_secret, user.totp_enabled_at, user.totp_last_step = secret, utcnow(), step
    user.session_epoch += 1
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_code_hash(c)) for c in codes)
    return codes


def disable(user: User, code: str) -> None:
    if user.totp_enabled_at is None:
        return
    if not check(user, code):
        raise InvalidInput(_l("That code is not valid."), field="code")
    user.totp_secret = user.totp_enabled_at = None
    user.session_epoch += 1
    db.session.execute(update(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                  RecoveryCode.used_at.is_(None)).values(used_at=utcnow()))


def check(user: User, code: Optional[str]) -> bool:
    """A current TOTP code not used before, or an unused recovery code (either is then used up)."""
    code = (code or "").strip()
    if not code or user.totp_secret is None:
        return False
    step = _totp_step(user.totp_secret, code)
    if step is not None:
        return _use_step(user, step)
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
