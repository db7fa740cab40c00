"""Security notices: mail the owner when something happens to their account that a thief would do.

The events: a sign-in from a network the account has not signed in from before, a new API key, a
changed password, a changed email address (mailed to the old address and the new one), and
two-factor authentication turned off. Each mail says what happened, when (UTC), from which client
address, and what to do if it was not them. None carries a secret: no key, link token or code.

Views call `notify` after the change committed; the mail goes out on the background sender
(notices.later), so no request waits for SMTP, and a rollback never leaves a mail about nothing.

Known networks (`known_address`): a sign-in notes the client's network (IPv4 /24, IPv6 /64, so a
home router's new address on the same line is not news) in the sign-in's transaction. The very
first sign-in of an account mails nothing: the person has just signed up. The networks are
personal data: retention.py sets them to NULL after IP_RETENTION_DAYS without a sign-in from them
(the row stays, so the next sign-in is still known not to be the first).
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Optional

from flask import Flask, has_request_context, render_template
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from . import i18n, links, mail, notices
from .extensions import db
from .models import KnownAddress, User, UserStatus, utcnow

log = logging.getLogger(__name__)

NEW_ADDRESS = "new_address"
KEY_CREATED = "key_created"
PASSWORD_CHANGED = "password_changed"
EMAIL_CHANGED = "email_changed"
TWO_FACTOR_OFF = "two_factor_off"
KINDS = (NEW_ADDRESS, KEY_CREATED, PASSWORD_CHANGED, EMAIL_CHANGED, TWO_FACTOR_OFF)


def network_of(ip: Optional[str], ipv4_prefix: int = 24) -> Optional[str]:
    """The network an address belongs to: IPv4 /24 (for "have we seen it"; the throttles count single
    IPv4 addresses, /32, written as the address), IPv6 /64, the size one host is routinely given.
    An IPv4 address mapped into IPv6 counts as IPv4. None if `ip` is not an address."""
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4 and ipv4_prefix == 32:
        return str(address)
    prefix = ipv4_prefix if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _insert_if_absent(values: dict):
    dialect = sqlite if db.session.get_bind().dialect.name == "sqlite" else postgresql
    return (dialect.insert(KnownAddress.__table__).values(**values)
            .on_conflict_do_nothing(index_elements=["user_id", "network"]).returning(KnownAddress.__table__.c.id))


def note_sign_in(user_id: int, ip: Optional[str], now: Optional[datetime] = None) -> bool:
    """Note a sign-in from `ip` (in the caller's transaction); True when a new-address notice is due.

    Due when the network is new to the account and the account signed in before. Of two sign-ins
    from one new network at the same moment, one inserts the row and only it is due.
    """
    network = network_of(ip)
    if network is None:
        return False
    now = now or utcnow()
    table = KnownAddress.__table__
    seen = db.session.execute(update(table).where(table.c.user_id == user_id, table.c.network == network)
                              .values(last_seen_at=now)).rowcount
    if seen:
        return False
    signed_in_before = db.session.scalar(select(table.c.id).where(table.c.user_id == user_id).limit(1)) is not None
    inserted = db.session.execute(_insert_if_absent(
        {"user_id": user_id, "network": network, "first_seen_at": now, "last_seen_at": now})).scalar()
    return inserted is not None and signed_in_before


@dataclass(frozen=True)
class Event:
    """Something that happened to an account, as the notice tells it."""

    kind: str
    user_id: int
    ip: Optional[str]
    at: datetime
    # The language of the request that caused it: used when the account has not chosen one.
    language: Optional[str] = None
    details: dict = field(default_factory=dict)  # key_name; old_email and new_email


def notify(app: Flask, kind: str, user_id: int, ip: Optional[str], **details) -> Event:
    """Mail the notice of `kind` soon, on the background sender; returns at once. Call after the commit."""
    if kind not in KINDS:
        raise ValueError(f"unknown security notice {kind!r}")
    event = Event(kind, user_id, ip or None, utcnow(), i18n.language() if has_request_context() else None,
                  dict(details))
    notices.later(app, partial(send, event))
    return event


_SUBJECTS = {
    NEW_ADDRESS: lambda d: _("New sign-in to your account"),
    KEY_CREATED: lambda d: _("A new API key was created: %(name)s", name=d.get("key_name", "")),
    PASSWORD_CHANGED: lambda d: _("Your password was changed"),
    EMAIL_CHANGED: lambda d: _("Your email address was changed"),
    TWO_FACTOR_OFF: lambda d: _("Two-factor authentication was turned off"),
}


def _recipients(event: Event, user: User) -> list[str]:
    if event.kind == EMAIL_CHANGED:
        # The old address first: the one a thief who changed it can no longer read.
        return [a for a in dict.fromkeys((event.details.get("old_email"), event.details.get("new_email"))) if a]
    return [user.email]


def send(event: Event) -> int:
    """Mail the notice now (the background sender runs this); how many mails went out."""
    user = db.session.get(User, event.user_id)
    if user is None or user.status == UserStatus.TERMINATED.value:
        return 0  # a closed account: nothing left to protect, and its address is gone
    sent = 0
    with mail.localized(user.locale or event.language):
        context = {"event": event, "ip": event.ip or _("an unknown address"), "at": event.at,
                   "reset": links.public_url("auth.forgot"), "account": links.public_url("account.index"),
                   "contact": links.public_url("pages.contact"), **event.details}
        subject = _SUBJECTS[event.kind](event.details)
        for to in _recipients(event, user):
            body = render_template(f"mail/security_{event.kind}.txt", to_old=to == event.details.get("old_email")
                                   and to != event.details.get("new_email"), **context)
            mail.send(to, subject, body)
            sent += 1
    return sent
