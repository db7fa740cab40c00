"""Abuse signals: keys used from many addresses, and accounts that look like one person's.

The terms forbid sharing API keys with third parties; a key shared that way shows up as calls
from many client addresses. Each billed call notes its key's client address for the UTC day in
`key_address` (insert-if-absent). A per-process memo of what was noted today makes a repeat
cost no query at all, so the proxy's hot path pays one small transaction per new
(key, day, address) in a process, and nothing after.

When a key has been used from more than KEY_SHARING_ADDRESSES_PER_DAY addresses in one day, a
conditional UPDATE flags it (once: `sharing_flagged_at` is set only where it was NULL) and its
owner is mailed, after that transaction commits, from the background sender: no call waits for
SMTP. The key's page then offers to rotate it (apikeys.rotate).

The operator may clear a flag that is a false positive (`clear`: console or `signals clear`,
with a reason, audited). The rule after a clear: on the UTC day of the clear, the addresses the
key was used from before it are forgiven, and the key is flagged again that day only once it
has been used from more than KEY_SHARING_ADDRESSES_PER_DAY addresses first seen *after* the
clear; on any later day the usual rule applies (more than the threshold that day), and a new
flag mails the owner again.

For the operator to review (nothing here acts on its own), `review()` gathers groups of
accounts: those that paid with one card (Stripe's card fingerprint), those that signed up from
one address within SIGNUP_CLUSTER_HOURS (the address of their first consent to the terms,
recorded at sign-up), and those whose keys were used from one address. A group is a reason to
look, not proof: an office or a university shares one address too.

The addresses are personal data: retention.py erases `key_address` rows after IP_RETENTION_DAYS.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Optional

from flask import Flask, current_app, render_template
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from . import audit, links, mail, notices
from .audit import Actor
from .database import atomic
from .errors import InvalidInput
from .extensions import db
from .models import Account, ApiKey, KeyAddress, Payment, TermsAcceptance, User, UserStatus, utcnow

log = logging.getLogger(__name__)

LOOKBACK_DAYS = 30   # the review looks this far back (addresses older than IP_RETENTION_DAYS are gone anyway)
MAX_PEOPLE = 50      # per group on a page: a proxy misconfigured to one address must not list everyone
MAX_GROUPS = 200
MEMO_LIMIT = 100_000  # (key, address) pairs a process remembers a day before it starts over


# -- recording ---------------------------------------------------------------------------------

class AddressMemo:
    """The (key, address) pairs this process has noted today: a repeat needs no query.

    Lives on the app (not the module), so two apps in one process (tests) never share it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._day: Optional[date] = None
        self._seen: set[tuple[int, str]] = set()

    def seen(self, day: date, key_id: int, ip: str) -> bool:
        with self._lock:
            return self._day == day and (key_id, ip) in self._seen

    def add(self, day: date, key_id: int, ip: str) -> None:
        with self._lock:
            if self._day != day or len(self._seen) >= MEMO_LIMIT:
                self._day, self._seen = day, set()
            self._seen.add((key_id, ip))


def memo(app: Flask) -> AddressMemo:
    return app.extensions.setdefault("tollgate.signals_memo", AddressMemo())


def _insert_if_absent(values: dict):
    dialect = sqlite if db.session.get_bind().dialect.name == "sqlite" else postgresql
    return (dialect.insert(KeyAddress.__table__).values(**values)
            .on_conflict_do_nothing(index_elements=["api_key_id", "day", "ip"]).returning(KeyAddress.__table__.c.id))


def addresses_on(key_id: int, day: date, after: Optional[datetime] = None) -> int:
    """How many client addresses the key was used from on `day` (first seen after `after`, if given)."""
    query = select(func.count()).select_from(KeyAddress).where(KeyAddress.api_key_id == key_id, KeyAddress.day == day)
    if after is not None:
        query = query.where(KeyAddress.first_seen_at > after)
    return db.session.scalar(query) or 0


def record(key_id: int, ip: str, now: datetime, threshold: int) -> bool:
    """Note that the key was used from `ip` on `now`'s UTC day (in the caller's transaction); True
    when this made the key cross `threshold` and flagged it (the caller mails its owner after commit)."""
    day = now.date()
    # RETURNING, not rowcount: some drivers report -1 for an INSERT ... ON CONFLICT.
    inserted = db.session.execute(_insert_if_absent(
        {"api_key_id": key_id, "day": day, "ip": ip, "first_seen_at": now})).scalar() is not None
    if not inserted or threshold <= 0:
        return False
    count = addresses_on(key_id, day)
    if count <= threshold:
        return False
    key = ApiKey.__table__
    cleared_at = db.session.scalar(select(key.c.sharing_cleared_at).where(key.c.id == key_id))
    if cleared_at is not None and cleared_at.date() == day and addresses_on(key_id, day, after=cleared_at) <= threshold:
        return False  # cleared today: the addresses seen before the clear were forgiven
    # The clear read above must still be the key's: a clear committed meanwhile decides afresh.
    same_clear = key.c.sharing_cleared_at.is_(None) if cleared_at is None else key.c.sharing_cleared_at == cleared_at
    flagged = db.session.execute(key.update().where(key.c.id == key_id, key.c.sharing_flagged_at.is_(None), same_clear)
                                 .values(sharing_flagged_at=now, sharing_addresses=count)).rowcount
    return flagged == 1


def clear(key: ApiKey, *, actor: Actor, reason: str, now: Optional[datetime] = None) -> None:
    """Clear the key's sharing flag as a false positive (audited, in the caller's transaction).

    Its addresses of today stay forgiven; see the module's docstring for when it is flagged again.
    """
    if key.sharing_flagged_at is None:
        raise InvalidInput(f"the key {key.hint} is not flagged as shared", field="key")
    now = now or utcnow()
    before = {"sharing_flagged_at": key.sharing_flagged_at, "sharing_addresses": key.sharing_addresses}
    key.sharing_flagged_at, key.sharing_addresses, key.sharing_cleared_at = None, None, now
    db.session.flush()
    audit.record(actor, "key.sharing_clear", "api_key", key.id, reason=reason, before=before,
                 after={"sharing_cleared_at": now, "addresses_today": addresses_on(key.id, now.date())})


def note_call(app: Flask, key_id: int, ip: Optional[str]) -> None:
    """After a call's hold: note its address, flag the key past the threshold and mail its owner once.

    Never raises: a signal that could not be recorded must not fail a call whose hold is placed.
    """
    if not ip:
        return
    now = utcnow()
    seen = memo(app)
    if seen.seen(now.date(), key_id, ip):
        return
    try:
        with atomic():
            flagged = record(key_id, ip, now, app.config["KEY_SHARING_ADDRESSES_PER_DAY"])
    except Exception:
        log.exception("could not note the client address of a call on key %s", key_id)
        return
    finally:
        db.session.close()
    seen.add(now.date(), key_id, ip)
    if flagged:
        log.warning("key %s was used from more than %s addresses today: flagged as shared", key_id,
                    app.config["KEY_SHARING_ADDRESSES_PER_DAY"])
        notices.later(app, partial(send_sharing_mail, key_id))


def send_sharing_mail(key_id: int) -> bool:
    """Mail the key's owner that it looks shared, with the way to rotate it; False if not sent."""
    row = db.session.execute(select(ApiKey, User).join(User, User.id == ApiKey.user_id)
                             .where(ApiKey.id == key_id)).first()
    if row is None:
        return False
    key, user = row
    if user.status == UserStatus.TERMINATED.value or key.revoked_at is not None:
        return False
    limit = current_app.config["KEY_SHARING_ADDRESSES_PER_DAY"]
    with mail.localized(user.locale):
        mail.send(user.email, _("Your API key “%(name)s” was used from %(count)s addresses in one day",
                                name=key.name, count=key.sharing_addresses),
                  render_template("mail/key_sharing.txt", key=key, limit=limit, keys=links.public_url("keys.index")))
    return True


def flagged_keys(limit: int = MAX_GROUPS) -> list[tuple[ApiKey, User]]:
    """Keys flagged as shared, newest flag first, with their owners."""
    return [tuple(row) for row in db.session.execute(
        select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.sharing_flagged_at.is_not(None))
        .order_by(ApiKey.sharing_flagged_at.desc()).limit(limit))]


# -- the operator's review -------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    user_id: int
    email: str
    status: str
    created_at: datetime


@dataclass
class Group:
    """Accounts that have something in common (`what`), for the operator to look at."""

    kind: str    # "card", "signup", "key-address"
    what: str    # the fingerprint or the address
    people: list[Person] = field(default_factory=list)
    more: int = 0  # people left off the list (MAX_PEOPLE)
    since: Optional[datetime] = None
    until: Optional[datetime] = None


@dataclass
class Review:
    cards: list[Group]
    signups: list[Group]
    key_addresses: list[Group]
    flagged: list[tuple[ApiKey, User]]

    @property
    def empty(self) -> bool:
        return not (self.cards or self.signups or self.key_addresses or self.flagged)


def _people(user_ids) -> dict[int, Person]:
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = db.session.execute(select(User.id, User.email, User.status, User.created_at).where(User.id.in_(ids)))
    return {row.id: Person(row.id, row.email, row.status, row.created_at) for row in rows}


def _group(kind: str, what: str, user_ids: list[int], people: dict[int, Person], **extra) -> Group:
    listed = [people[u] for u in dict.fromkeys(user_ids) if u in people]
    return Group(kind, what, listed[:MAX_PEOPLE], max(len(listed) - MAX_PEOPLE, 0), **extra)


def shared_cards(limit: int = MAX_GROUPS) -> list[Group]:
    """Card fingerprints that paid for more than one account, with those accounts' people."""
    shared = (select(Payment.card_fingerprint).where(Payment.card_fingerprint.is_not(None))
              .group_by(Payment.card_fingerprint).having(func.count(func.distinct(Payment.account_id)) > 1)
              .order_by(Payment.card_fingerprint).limit(limit))
    fingerprints = list(db.session.scalars(shared))
    if not fingerprints:
        return []
    rows = db.session.execute(select(Payment.card_fingerprint, Account.user_id)
                              .join(Account, Account.id == Payment.account_id)
                              .where(Payment.card_fingerprint.in_(fingerprints))
                              .group_by(Payment.card_fingerprint, Account.user_id)
                              .order_by(Payment.card_fingerprint, Account.user_id)).all()
    people = _people(row.user_id for row in rows)
    return [_group("card", fingerprint, [r.user_id for r in rows if r.card_fingerprint == fingerprint], people)
            for fingerprint in fingerprints]


def signup_clusters(window: timedelta, since: datetime) -> list[Group]:
    """Accounts created since `since` from one address, each within `window` of the previous one.

    The sign-up address is that of the person's first consent to the terms, recorded as they
    registered (users.register); accounts made by the operator have none.
    """
    first = (select(TermsAcceptance.user_id, func.min(TermsAcceptance.id).label("first_id"))
             .group_by(TermsAcceptance.user_id).subquery())
    rows = db.session.execute(
        select(TermsAcceptance.ip, User.id, User.created_at)
        .join(first, first.c.first_id == TermsAcceptance.id).join(User, User.id == TermsAcceptance.user_id)
        .where(TermsAcceptance.ip.is_not(None), User.created_at >= since)
        .order_by(TermsAcceptance.ip, User.created_at, User.id)).all()
    clusters: list[tuple[str, list]] = []
    for ip, user_id, created_at in rows:
        last = clusters[-1] if clusters else None
        if last is not None and last[0] == ip and created_at - last[1][-1][1] <= window:
            last[1].append((user_id, created_at))
        else:
            clusters.append((ip, [(user_id, created_at)]))
    clusters = [c for c in clusters if len(c[1]) > 1][:MAX_GROUPS]
    people = _people(u for _, members in clusters for u, _ in members)
    return [_group("signup", ip, [u for u, _ in members], people, since=members[0][1], until=members[-1][1])
            for ip, members in clusters]


def shared_key_addresses(since: date, limit: int = MAX_GROUPS) -> list[Group]:
    """Client addresses that keys of more than one account were used from since `since`."""
    owners = (select(KeyAddress.ip, ApiKey.user_id, func.min(KeyAddress.day).label("first"),
                     func.max(KeyAddress.day).label("last"))
              .join(ApiKey, ApiKey.id == KeyAddress.api_key_id).where(KeyAddress.day >= since)
              .group_by(KeyAddress.ip, ApiKey.user_id).subquery())
    shared = list(db.session.scalars(select(owners.c.ip).group_by(owners.c.ip).having(func.count() > 1)
                                     .order_by(func.count().desc(), owners.c.ip).limit(limit)))
    if not shared:
        return []
    rows = db.session.execute(select(owners).where(owners.c.ip.in_(shared))
                              .order_by(owners.c.ip, owners.c.user_id)).all()
    people = _people(row.user_id for row in rows)
    groups = []
    for ip in shared:
        mine = [r for r in rows if r.ip == ip]
        groups.append(_group("key-address", ip, [r.user_id for r in mine], people,
                             since=min(r.first for r in mine), until=max(r.last for r in mine)))
    return groups


def review(config, now: Optional[datetime] = None, days: int = LOOKBACK_DAYS) -> Review:
    """Everything the console's signals page and `flask signals list` show."""
    now = now or utcnow()
    since = now - timedelta(days=days)
    return Review(cards=shared_cards(),
                  signups=signup_clusters(timedelta(hours=config["SIGNUP_CLUSTER_HOURS"]), since),
                  key_addresses=shared_key_addresses(since.date()),
                  flagged=flagged_keys())

