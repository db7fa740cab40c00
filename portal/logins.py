"""Server-side records of logged-in sessions, so a session can end before its cookie does.

Flask's session is a signed cookie: once issued it stays valid until it expires, even after
logout, for anyone holding a copy. So each login gets a random id, kept in the cookie and (as a
SHA-256) in a `user_session` row; a request is logged in only while that row is live.
`User.session_epoch` still ends every session of a user at once (password change, suspension).
"""
import hashlib
import secrets
from datetime import timedelta
from typing import Optional

from sqlalchemy import delete, or_, select, update

from .extensions import db
from .models import User, UserSession, utcnow


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(user: User, max_age: timedelta) -> str:
    """A new session for `user`; returns the id to keep in the cookie. Sweeps the user's dead rows."""
    now = utcnow()
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id,
                                                 or_(UserSession.ended_at.is_not(None),
                                                     UserSession.created_at < now - max_age)))
    token = secrets.token_urlsafe(32)
    db.session.add(UserSession(user_id=user.id, token_hash=_hash(token), created_at=now))
    db.session.flush()
    return token


def live_user(token: Optional[str], user_id: int, max_age: timedelta) -> Optional[User]:
    """The user whose live session `token` is, or None (unknown, ended, expired, or someone else's)."""
    if not token:
        return None
    return db.session.scalar(select(User).join(UserSession, UserSession.user_id == User.id)
                             .where(UserSession.token_hash == _hash(token), User.id == user_id,
                                    UserSession.ended_at.is_(None), UserSession.created_at > utcnow() - max_age))


def end(token: Optional[str]) -> None:
    """End one session (logout): its cookie, and every copy of it, logs no one in from now on."""
    if token:
        db.session.execute(update(UserSession).where(UserSession.token_hash == _hash(token),
                                                     UserSession.ended_at.is_(None)).values(ended_at=utcnow()))


def end_all(user: User) -> None:
    """End every session of the user."""
    db.session.execute(update(UserSession).where(UserSession.user_id == user.id,
                                                 UserSession.ended_at.is_(None)).values(ended_at=utcnow()))
