"""Single-use, expiring tokens for links sent by email. Only a SHA-256 of each token is stored."""
import hashlib
import secrets
from datetime import timedelta
from typing import Optional

from sqlalchemy import select, update

from .errors import DomainError
from .extensions import db
from .models import EmailToken, TokenPurpose, User, utcnow

LIFETIMES = {TokenPurpose.VERIFY: timedelta(days=2), TokenPurpose.RESET: timedelta(hours=1),
             TokenPurpose.CHANGE_EMAIL: timedelta(days=1)}


class InvalidToken(DomainError):
    """The link is unknown, already used, or expired."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(user: User, purpose: TokenPurpose, new_email: Optional[str] = None) -> str:
    """A new token for `user`; earlier unused tokens for the same purpose stop working."""
    now = utcnow()
    db.session.execute(update(EmailToken).where(EmailToken.user_id == user.id, EmailToken.purpose == purpose.value,
                                                EmailToken.used_at.is_(None)).values(used_at=now))
    token = secrets.token_urlsafe(32)
    db.session.add(EmailToken(user_id=user.id, purpose=purpose.value, token_hash=_hash(token), new_email=new_email,
                              created_at=now, expires_at=now + LIFETIMES[purpose]))
    db.session.flush()
    return token


def consume(token: str, purpose: TokenPurpose) -> EmailToken:
    """Use a token once: a second use, a wrong purpose or an expired token raises InvalidToken."""
    row = db.session.scalar(select(EmailToken).where(EmailToken.token_hash == _hash(token or "")))
    used = db.session.execute(
        update(EmailToken).where(EmailToken.token_hash == _hash(token or ""), EmailToken.purpose == purpose.value,
                                 EmailToken.used_at.is_(None), EmailToken.expires_at > utcnow())
        .values(used_at=utcnow()).execution_options(synchronize_session=False)
    ).rowcount
    if row is None or used != 1:
        raise InvalidToken("This link is invalid, already used or expired. Ask for a new one.")
    return row
