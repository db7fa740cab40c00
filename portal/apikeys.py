"""API keys: issued once in plaintext, stored only as a SHA-256 hash, looked up by that hash.

Keys carry ~238 bits of randomness, so a fast hash is safe and keeps authentication on the
proxy's hot path to one indexed lookup; the `tg_` prefix makes leaked keys easy to scan for.
"""
import hashlib
import ipaddress
import json
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, case, or_, select

from . import database, prepared
from .errors import (AccountNotVerified, AccountSuspended, InvalidInput, KeyExpired, KeyRevoked, NotFound,
                     SpendCapReached, UnknownKey)
from .apilimits import Overrides
from .extensions import db
from .models import Account, ApiKey, CatalogModel, User, UserStatus, utcnow
from .money import format_usd

PREFIX = "tg_"
_ALPHABET = string.ascii_letters + string.digits
_BODY_LENGTH = 40
MAX_NAME_LENGTH = 100
MAX_CONCURRENCY = 10_000  # a key's own limit; the operator's per-key and per-account limits still apply


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def issue(user: User, name: str = "") -> tuple[ApiKey, str]:
    """Create a key for `user`; the plaintext is returned here and never stored or shown again."""
    if not user.is_verified:
        raise InvalidInput(f"{user.email} has not verified their email; keys need a verified account")
    if user.status != UserStatus.ACTIVE.value:
        raise InvalidInput(f"{user.email} is {user.status}; keys cannot be created")
    name = (name or "").strip() or "default"
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"key name must be at most {MAX_NAME_LENGTH} characters")
    plaintext = PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    key = ApiKey(user_id=user.id, name=name, key_hash=hash_key(plaintext),
                 hint=f"{PREFIX}…{plaintext[-4:]}")
    db.session.add(key)
    db.session.flush()
    return key, plaintext


@dataclass(frozen=True)
class Caller:
    """Who a valid key speaks for, and the key's limits: all the proxy needs, from one query."""

    key_id: int
    key_name: str
    hint: str
    user_id: int
    account_id: int
    allowed_models: Optional[frozenset] = None
    networks: Optional[tuple] = None
    max_concurrency: Optional[int] = None  # the key's own limit on calls in flight, if its owner set one
    overrides: Overrides = Overrides()  # the operator's and the owner's per-minute and concurrency limits

    def may_use(self, public_id: str) -> bool:
        return self.allowed_models is None or public_id in self.allowed_models

    def may_call_from(self, ip: Optional[str]) -> bool:
        if self.networks is None:
            return True
        try:
            address = ipaddress.ip_address(ip or "")
        except ValueError:
            return False
        return any(address in network for network in self.networks)


# Built once and run as Core on the session's connection: these are on every proxied call.
_key, _user, _account = ApiKey.__table__, User.__table__, Account.__table__
_AUTHENTICATE = (
    select(_key.c.id, _key.c.name, _key.c.hint, _key.c.revoked_at, _key.c.expires_at, _key.c.allowed_models,
           _key.c.ip_allowlist, _key.c.max_concurrency, _user.c.id.label("user_id"), _user.c.status, _user.c.is_verified,
           _account.c.id.label("account_id"), _key.c.rpm_limit, _key.c.tpm_limit, _key.c.concurrency_limit,
           _key.c.max_rpm, _key.c.max_tpm, _account.c.rpm_limit.label("account_rpm"),
           _account.c.tpm_limit.label("account_tpm"), _account.c.concurrency_limit.label("account_concurrency"))
    .join(_user, _user.c.id == _key.c.user_id).join(_account, _account.c.user_id == _user.c.id)
    .where(_key.c.key_hash == bindparam("key_hash"))
)
_this_month = case((_key.c.spent_month_key == bindparam("month"), _key.c.spent_month), else_=0)
# Reserve a call's hold against the key's caps (in-flight holds count), and note the use.
_RESERVE = (
    _key.update()
    .where(_key.c.id == bindparam("key_id"),
           or_(_key.c.spend_cap_total.is_(None),
               _key.c.spent_total + _key.c.held + bindparam("amount") <= _key.c.spend_cap_total),
           or_(_key.c.spend_cap_monthly.is_(None),
               _this_month + _key.c.held + bindparam("amount") <= _key.c.spend_cap_monthly))
    .values(held=_key.c.held + bindparam("amount"), spent_month=_this_month, spent_month_key=bindparam("month"),
            last_used_at=bindparam("now"), last_used_ip=bindparam("ip"))
)
_SETTLE = (
    _key.update().where(_key.c.id == bindparam("key_id"))
    .values(held=_key.c.held - bindparam("released"), spent_total=_key.c.spent_total + bindparam("cost"),
            spent_month=_this_month + bindparam("cost"), spent_month_key=bindparam("month"))
)

_CAPS = select(_key.c.held, _key.c.spent_total, _key.c.spent_month, _key.c.spent_month_key, _key.c.spend_cap_total,
               _key.c.spend_cap_monthly).where(_key.c.id == bindparam("key_id"))


def _month() -> str:
    return utcnow().strftime("%Y-%m")


def _networks(text: Optional[str]) -> Optional[tuple]:
    if not text:
        return None
    return tuple(ipaddress.ip_network(line.strip(), strict=False) for line in text.splitlines() if line.strip())


def authenticate(plaintext: Optional[str]) -> Caller:
    """Return who `plaintext` speaks for, or raise the KeyRejected subclass saying why not."""
    # The messages reach the API's client, in the language it asked for (translated only on refusal).
    if not plaintext or not plaintext.startswith(PREFIX):
        raise UnknownKey(_("missing or malformed API key"))
    row = prepared.run(db.session.connection(), _AUTHENTICATE, {"key_hash": hash_key(plaintext)}).first()
    if row is None:
        raise UnknownKey(_("unknown API key"))
    if row.revoked_at is not None:
        raise KeyRevoked(_("this API key has been revoked"))
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise KeyExpired(_("this API key has expired"))
    if row.status != UserStatus.ACTIVE.value:
        raise AccountSuspended(_("this account is suspended") if row.status == UserStatus.SUSPENDED.value
                               else _("this account is terminated"))
    if not row.is_verified:
        raise AccountNotVerified(_("verify your email address before using API keys"))
    allowed = frozenset(json.loads(row.allowed_models)) if row.allowed_models else None
    return Caller(row.id, row.name, row.hint, row.user_id, row.account_id, allowed, _networks(row.ip_allowlist),
                  row.max_concurrency, Overrides(row.account_rpm, row.account_tpm, row.account_concurrency, row.rpm_limit,
                                                 row.tpm_limit, row.concurrency_limit, row.max_rpm, row.max_tpm))


def reserve(key_id: int, amount: int, ip: Optional[str]) -> None:
    """Count a call's hold against the key's spend caps, or raise SpendCapReached naming the cap."""
    month = _month()  # once: the refusal must speak of the month the UPDATE checked
    reserved = prepared.run(database.connection(), _RESERVE,
                            {"key_id": key_id, "amount": amount, "month": month, "now": utcnow(), "ip": ip}).rowcount
    if reserved != 1:
        raise _refusal(key_id, amount, month)


def _refusal(key_id: int, amount: int, month: str) -> Exception:
    """Explain why the conditional UPDATE matched no row, from the key as it reads now.

    The read can disagree with what the UPDATE saw: on Postgres (READ COMMITTED) it sees calls
    that settled in between, so neither cap may refuse any more. Only a cap that exists is named.
    """
    # On the transaction's own connection (the proxy's hold runs outside the ORM session).
    key = database.connection().execute(_CAPS, {"key_id": key_id}).first()
    if key is None:
        return UnknownKey("unknown API key")
    this_month = key.spent_month if key.spent_month_key == month else 0
    # Lazy messages: written in the language of the request that shows them (English elsewhere).
    held = _l(", and calls in flight hold %(held)s", held=format_usd(key.held)) if key.held else ""
    if key.spend_cap_total is not None and key.spent_total + key.held + amount > key.spend_cap_total:
        return SpendCapReached(_l("this key has spent %(spent)s of its %(cap)s total cap%(held)s; the call could "
                                  "cost up to %(amount)s. Raise the cap in the portal or send a smaller max_tokens",
                                  spent=format_usd(key.spent_total), cap=format_usd(key.spend_cap_total), held=held,
                                  amount=format_usd(amount)))
    if key.spend_cap_monthly is not None and this_month + key.held + amount > key.spend_cap_monthly:
        return SpendCapReached(_l("this key has spent %(spent)s of its %(cap)s cap for %(month)s%(held)s; the call "
                                  "could cost up to %(amount)s. Raise the cap in the portal or send a smaller "
                                  "max_tokens", spent=format_usd(this_month), cap=format_usd(key.spend_cap_monthly),
                                  month=month, held=held, amount=format_usd(amount)))
    caps = [_l("%(amount)s total cap", amount=format_usd(key.spend_cap_total))] if key.spend_cap_total else []
    if key.spend_cap_monthly is not None:
        caps.append(_l("%(amount)s cap for %(month)s", amount=format_usd(key.spend_cap_monthly), month=month))
    which = (_l("%(first)s and %(second)s", first=caps[0], second=caps[1]) if len(caps) == 2
             else caps[0] if caps else _l("spend cap"))
    return SpendCapReached(_l("this key's %(caps)s had no room for a call that could cost up to %(amount)s while its "
                              "other calls were in flight. Try again, or raise the cap in the portal or send a "
                              "smaller max_tokens", caps=which, amount=format_usd(amount)))


def settle_spend(key_id: int, reserved: int, cost: int) -> None:
    """Replace a call's reservation with what it really cost (zero when it was released)."""
    prepared.run(database.connection(), _SETTLE, {"key_id": key_id, "released": reserved, "cost": cost,
                                                    "month": _month()})


def spent_this_month(key: ApiKey) -> int:
    return key.spent_month if key.spent_month_key == _month() else 0


@dataclass(frozen=True)
class Limits:
    allowed_models: Optional[list[str]] = None
    ip_allowlist: Optional[str] = None
    spend_cap_total: Optional[int] = None
    spend_cap_monthly: Optional[int] = None
    expires_at: Optional[datetime] = None
    max_concurrency: Optional[int] = None


def set_limits(key: ApiKey, limits: Limits) -> None:
    """Validate and apply a key's limits; None lifts a limit."""
    if limits.allowed_models is not None:
        known = {m.public_id for m in db.session.scalars(select(CatalogModel).where(CatalogModel.enabled.is_(True)))}
        unknown = sorted(set(limits.allowed_models) - known)
        if unknown:
            raise InvalidInput(f"unknown model(s): {', '.join(unknown)}", field="allowed_models")
    networks = None
    if limits.ip_allowlist:
        lines = [line.strip() for line in limits.ip_allowlist.replace(",", "\n").splitlines() if line.strip()]
        try:
            networks = [str(ipaddress.ip_network(line, strict=False)) for line in lines]
        except ValueError as exc:
            raise InvalidInput(f"not an IP address or CIDR range: {exc}", field="ip_allowlist") from None
    for name in ("spend_cap_total", "spend_cap_monthly"):
        value = getattr(limits, name)
        if value is not None and value <= 0:
            raise InvalidInput("a spend cap must be more than zero (leave it empty for no cap)", field=name)
    if limits.expires_at is not None and limits.expires_at <= utcnow():
        raise InvalidInput("the expiry date must be in the future", field="expires_at")
    if limits.max_concurrency is not None and not 1 <= limits.max_concurrency <= MAX_CONCURRENCY:
        raise InvalidInput(f"calls at once must be a whole number from 1 to {MAX_CONCURRENCY} (leave it empty "
                           "for the operator's limit)", field="max_concurrency")
    key.allowed_models = json.dumps(sorted(set(limits.allowed_models))) if limits.allowed_models else None
    key.ip_allowlist = "\n".join(networks) if networks else None
    key.spend_cap_total, key.spend_cap_monthly = limits.spend_cap_total, limits.spend_cap_monthly
    key.expires_at = limits.expires_at
    key.max_concurrency = limits.max_concurrency


def rename(key: ApiKey, name: str) -> None:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"a key name is 1-{MAX_NAME_LENGTH} characters", field="name")
    key.name = name


def list_for(user: User) -> list[ApiKey]:
    return list(db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id)
                                   .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc())))


def find_for(user: User, key_id: int) -> ApiKey:
    key = db.session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user.id))
    if key is None:
        raise NotFound("no such key")
    return key


def revoke(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()


# What a rotated key does not take from the old one: its identity and secret, its use, its spend
# and calls in flight (`ledger verify` checks each key's spend against its own charges; calls in
# flight settle on the old key) and its sharing flag. Every other column (name, limits, spend caps,
# and any limit added later) is copied.
_NOT_ROTATED = frozenset({"id", "key_hash", "hint", "created_at", "last_used_at", "last_used_ip", "revoked_at",
                          "held", "spent_total", "spent_month", "spent_month_key", "sharing_flagged_at",
                          "sharing_addresses", "sharing_cleared_at"})


def rotate(key: ApiKey) -> tuple[ApiKey, str]:
    """Replace a live key by a new one with the same name and limits, and revoke it; the new
    plaintext is returned here only."""
    if key.revoked_at is not None:
        raise InvalidInput("this key is revoked already; create a new one")
    new, plaintext = issue(key.user, key.name)
    for column in ApiKey.__table__.columns:
        if column.key not in _NOT_ROTATED:
            setattr(new, column.key, getattr(key, column.key))
    revoke(key)
    db.session.flush()
    return new, plaintext


def revoke_all(user: User) -> int:
    """Revoke every live key of `user`; returns how many."""
    keys = db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))).all()
    for key in keys:
        revoke(key)
    return len(keys)
