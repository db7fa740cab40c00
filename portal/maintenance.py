"""Maintenance mode: the API answers 503 with Retry-After, the portal shows a banner, the console works.

The state is one site setting (sitesettings.py), so every process sees it; the proxy reads it
from that module's per-process cache on each call, at no database cost most of the time.

An end time (`until`) is a promise to users: when it passes, maintenance ends by itself, with no
one having to remember to switch it off. Work running late is announced by turning it on again
with a later end time. Without an end time it lasts until turned off.
"""
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from .audit import Actor, record
from .errors import InvalidInput
from .models import utcnow
from . import sitesettings

KEY = "maintenance"
MAX_MESSAGE = 500
# Retry-After when no end time was given: long enough not to hammer, short enough to notice the end.
DEFAULT_RETRY_SECONDS = 300


@dataclass(frozen=True)
class State:
    """Maintenance as announced: since when, until when (None: until turned off), and the operator's words."""

    since: datetime
    until: Optional[datetime]
    message: str

    def active(self, now: Optional[datetime] = None) -> bool:
        return self.until is None or (now or utcnow()) < self.until

    def retry_after(self, now: Optional[datetime] = None) -> int:
        """Whole seconds a client should wait: until the end time, or a default without one."""
        if self.until is None:
            return DEFAULT_RETRY_SECONDS
        return max(1, math.ceil((self.until - (now or utcnow())).total_seconds()))

    def as_dict(self) -> dict:
        return {"since": self.since.isoformat(), "until": self.until.isoformat() if self.until else None,
                "message": self.message}


def _parse(raw: str) -> Optional[State]:
    if not raw:
        return None
    try:
        data = json.loads(raw)
        until = datetime.fromisoformat(data["until"]) if data.get("until") else None
        return State(since=datetime.fromisoformat(data["since"]), until=until, message=str(data.get("message") or ""))
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: treated as off rather than locking everyone out


def announced() -> Optional[State]:
    """The stored announcement, whether or not its end time has passed."""
    return _parse(sitesettings.stored().get(KEY, ""))


def saved() -> Optional[State]:
    """The announcement as the caller's transaction sees it (after a change, before the commit)."""
    return _parse(sitesettings.current_value(KEY))


def current(now: Optional[datetime] = None) -> Optional[State]:
    """Maintenance in force now, or None. Cheap: read from the per-process settings cache."""
    state = announced()
    return state if state is not None and state.active(now) else None


def _clean_message(message: Optional[str]) -> str:
    message = (message or "").strip()
    if len(message) > MAX_MESSAGE:
        raise InvalidInput(f"Keep the message under {MAX_MESSAGE} characters.", field="message")
    return message


def _clean_until(until: Optional[datetime], now: datetime) -> Optional[datetime]:
    if until is None:
        return None
    if until.tzinfo is None:
        raise InvalidInput("Give the end time with its timezone, e.g. 2027-01-31T18:00:00Z.", field="until")
    if until <= now:
        raise InvalidInput("The end time has already passed; give a time in the future, or none.", field="until")
    if until > now + timedelta(days=366):
        raise InvalidInput("The end time is more than a year away; give a nearer one, or none.", field="until")
    return until.replace(microsecond=0)


def turn_on(actor: Actor, *, message: Optional[str] = None, until: Optional[datetime] = None,
            reason: Optional[str] = None, now: Optional[datetime] = None) -> bool:
    """Start maintenance, or change its message or end time; False when it is already on exactly so."""
    now = now or utcnow()
    message, until = _clean_message(message), _clean_until(until, now)
    stored = saved()
    before = stored if stored is not None and stored.active(now) else None
    if before is not None and (before.message, before.until) == (message, until):
        return False
    state = State(since=before.since if before else now.replace(microsecond=0), until=until, message=message)
    sitesettings.put(KEY, json.dumps(state.as_dict()))
    record(actor, "maintenance.on" if before is None else "maintenance.change", "site", KEY, reason=reason,
           before={"on": before is not None, **(before.as_dict() if before else {})},
           after={"on": True, **state.as_dict()})
    return True


def turn_off(actor: Actor, *, reason: Optional[str] = None, now: Optional[datetime] = None) -> bool:
    """End maintenance now; False when it was not on (or its end time had passed already)."""
    now = now or utcnow()
    stored = saved()
    if stored is None or not stored.active(now):
        return False  # off, or ended by itself at its end time: nothing to change
    sitesettings.put(KEY, "")
    record(actor, "maintenance.off", "site", KEY, reason=reason, before={"on": True, **stored.as_dict()},
           after={"on": False})
    return True
