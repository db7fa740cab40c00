"""The operator's audit log: every console and CLI action, append-only.

Domain functions that change something on an operator's behalf take an `Actor` and call
`record` in the same transaction as the change, so an action and its entry land together or not
at all. Views build the actor from the logged-in admin and the client address; the CLI from the
login running it.
"""
import getpass
import os
from dataclasses import dataclass
from typing import Any, Optional

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from .errors import InvalidInput
from .extensions import db
from .models import AuditEntry, User, utcnow

# Values never written to the log, whatever the caller passes: credentials and secrets.
SECRET_FIELDS = frozenset({"api_key", "password", "password_hash", "totp_secret", "secret", "token"})


@dataclass(frozen=True)
class Actor:
    """Who acts: an admin in the console (with their address) or the operator at the command line."""

    label: str
    user_id: Optional[int] = None
    ip: Optional[str] = None

    @classmethod
    def admin(cls, user: User, ip: Optional[str]) -> "Actor":
        return cls(label=user.email, user_id=user.id, ip=ip)

    @classmethod
    def cli(cls) -> "Actor":
        try:
            login = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (containers)
            login = str(os.getuid())
        return cls(label=f"cli:{login}")


def _clean(values: Optional[dict]) -> Optional[dict]:
    """JSON-safe, secrets masked: a credential in the log would be a leak kept forever."""
    if values is None:
        return None
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECRET_FIELDS:
            out[key] = "(set)" if value else None
        elif value is None or isinstance(value, (bool, int, str)):
            out[key] = value
        elif isinstance(value, dict):
            out[key] = _clean(value)
        elif isinstance(value, (list, tuple)):
            out[key] = [v if isinstance(v, (bool, int, str)) or v is None else str(v) for v in value]
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        else:
            out[key] = str(value)  # floats never reach here for money: amounts are integers
    return out


MAX_REASON = 2000


def require_reason(reason: Optional[str], field: str = "reason") -> str:
    """An action's reason, trimmed; InvalidInput when it is missing or too long."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput(_l("Give a reason: it is kept in the audit log (and, where it says so, sent to the user)."),
                           field=field)
    if len(reason) > MAX_REASON:
        raise InvalidInput(_l("Keep the reason under %(limit)s characters.", limit=f"{MAX_REASON:,}"), field=field)
    return reason


def record(actor: Actor, action: str, target_type: str = "", target_id: Any = "", *,
           reason: Optional[str] = None, before: Optional[dict] = None, after: Optional[dict] = None) -> AuditEntry:
    """Append one entry in the caller's transaction."""
    entry = AuditEntry(at=utcnow(), actor_id=actor.user_id, actor=actor.label[:254], ip=actor.ip, action=action,
                       target_type=target_type, target_id=str(target_id)[:128], reason=reason or None,
                       before=_clean(before), after=_clean(after))
    db.session.add(entry)
    db.session.flush()
    return entry


def changes(before: Optional[dict], after: Optional[dict]) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for each field that differs: what the log page shows."""
    before, after = before or {}, after or {}
    return [(key, before.get(key), after.get(key)) for key in dict.fromkeys([*before, *after])
            if before.get(key) != after.get(key)]


def search(*, action: str = "", target_type: str = "", target_id: str = "", actor: str = ""):
    """A query for entries, newest first, narrowed by whichever filters are given."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    if action:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True))
    if target_type:
        query = query.where(AuditEntry.target_type == target_type)
    if target_id:
        query = query.where(AuditEntry.target_id == target_id)
    if actor:
        query = query.where(func.lower(AuditEntry.actor).contains(actor.lower(), autoescape=True))
    return query


def for_target(target_type: str, target_id: Any, limit: int = 50) -> list[AuditEntry]:
    return list(db.session.scalars(search(target_type=target_type, target_id=str(target_id)).limit(limit)))
