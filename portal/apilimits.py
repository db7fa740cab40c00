"""Per-minute limits on /v1 calls: requests and tokens, per key and per account; who may set them.

Which limit applies: the operator's configured default (RATE_LIMIT_RPM_PER_KEY, ...), unless the
operator set an override on the account or the key (console, `flask limits set`); then a key's
owner may lower the key's, never raise it. 0 means no limit.

How they are counted: fixed windows of one wall-clock minute (every process and machine agrees
where a minute ends, so the reset time is the same everywhere), in portal.ratelimit's counters.
Requests are counted at admission, count first then compare, so of a burst exactly the limit gets
through; a refused request is taken back from every counter. Tokens are counted when a call
settles (what was charged, every class) and checked at admission: a call is refused while the
minute's tokens are at or over the limit, since what it will use is not known before it runs.
"""
import time
from dataclasses import astuple, dataclass, replace
from typing import Optional

from . import metrics, ratelimit
from .errors import DomainError, InvalidInput

WINDOW = 60  # seconds
# Wall-clock seconds: windows are whole minutes every process agrees on (tests set a fixed moment).
clock = time.time
MAX_PER_MINUTE = 10**12  # what a form or the CLI accepts; larger is a typo
KEEP = object()  # `set_overrides`: leave this limit as it is


class RateLimited(DomainError):
    """A call over a per-minute limit: `scope` key|account, `kind` requests|tokens."""

    def __init__(self, scope: str, kind: str, limit: int, quota: "Quota"):
        super().__init__(f"this {'API key' if scope == 'key' else 'account'} has used its {limit:,} "
                         f"{kind} per minute")
        self.scope, self.kind, self.limit, self.quota = scope, kind, limit, quota


@dataclass(frozen=True)
class Overrides:
    """What is set in the database for one key's calls; None: not set (the default applies)."""

    account_rpm: Optional[int] = None
    account_tpm: Optional[int] = None
    account_concurrency: Optional[int] = None
    key_rpm: Optional[int] = None
    key_tpm: Optional[int] = None
    key_concurrency: Optional[int] = None
    own_rpm: Optional[int] = None   # the key owner's own, at most the operator's
    own_tpm: Optional[int] = None


@dataclass(frozen=True)
class Rates:
    """The per-minute limits one key's calls are held to (0: none)."""

    key_rpm: int = 0
    key_tpm: int = 0
    account_rpm: int = 0
    account_tpm: int = 0


def _lowest(*limits: int) -> int:
    """The tightest of some limits where 0 means none (0 if all are none)."""
    real = [limit for limit in limits if limit]
    return min(real) if real else 0


def operator_rates(config, overrides: Overrides) -> Rates:
    """What the operator allows: overrides where set, else the configured defaults."""
    def pick(value, setting):
        return config[setting] if value is None else value
    return Rates(key_rpm=pick(overrides.key_rpm, "RATE_LIMIT_RPM_PER_KEY"),
                 key_tpm=pick(overrides.key_tpm, "RATE_LIMIT_TPM_PER_KEY"),
                 account_rpm=pick(overrides.account_rpm, "RATE_LIMIT_RPM_PER_ACCOUNT"),
                 account_tpm=pick(overrides.account_tpm, "RATE_LIMIT_TPM_PER_ACCOUNT"))


def rates(config, overrides: Overrides) -> Rates:
    """The limits that apply: the operator's, with the key lowered by its owner's own limits."""
    allowed = operator_rates(config, overrides)
    return replace(allowed, key_rpm=_lowest(allowed.key_rpm, overrides.own_rpm or 0),
                   key_tpm=_lowest(allowed.key_tpm, overrides.own_tpm or 0))


def owner_ceiling(config, overrides: Overrides) -> tuple[int, int]:
    """The most a key's owner may set as the key's own (requests, tokens) per minute: what the key
    could do under the operator's key and account limits (0: no ceiling)."""
    allowed = operator_rates(config, overrides)
    return _lowest(allowed.key_rpm, allowed.account_rpm), _lowest(allowed.key_tpm, allowed.account_tpm)


def concurrency(per_account: int, per_key: int, total: int, overrides: Overrides) -> tuple[int, int]:
    """Calls in flight per process (per account, per key), the operator's overrides applied to the
    configured (per_account, per_key); a key's default follows its account's when they were equal."""
    account = min(overrides.account_concurrency or per_account, total)
    key = overrides.key_concurrency or (account if per_key == per_account else min(per_key, account))
    return account, min(key, total)


# -- counting -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quota:
    """Where one admitted call stands in its minute: for the SDKs' headers, and to count its tokens."""

    account_id: int
    key_id: int
    rates: Rates
    reset_at: float                          # wall-clock seconds when the minute ends
    requests: Optional[tuple[int, int]] = None   # (limit, remaining) of the tightest request limit
    tokens: Optional[tuple[int, int]] = None     # (limit, remaining) of the tightest token limit


def _name(kind: str, scope: str, ident: int, minute: int) -> str:
    return f"v1:{kind}:{scope}:{ident}:{minute}"


def _tightest(pairs: list) -> Optional[tuple[int, int]]:
    return min(pairs, key=lambda pair: (pair[1], pair[0])) if pairs else None


def admit(account_id: int, key_id: int, limits: Rates, now: Optional[float] = None) -> Quota:
    """Count one request against its minute, or raise RateLimited (counting nothing)."""
    now = clock() if now is None else now
    minute = int(now // WINDOW)
    quota = Quota(account_id, key_id, limits, (minute + 1) * WINDOW)
    scopes = (("key", key_id, limits.key_rpm, limits.key_tpm), ("account", account_id, limits.account_rpm,
                                                                 limits.account_tpm))
    if not any(astuple(limits)):
        return quota  # nothing limited: no counter touched
    store = ratelimit.counters()
    tokens = []
    for scope, ident, _, tpm in scopes:
        if tpm:
            used = store.count(_name("t", scope, ident, minute))
            tokens.append((tpm, max(0, tpm - used)))
            if used >= tpm:
                metrics.rate_limited(scope, "tokens")
                raise RateLimited(scope, "tokens", tpm, replace(quota, tokens=(tpm, 0)))
    scoped = [(scope, ratelimit.Limit(_name("r", scope, ident, minute), rpm, WINDOW))
              for scope, ident, rpm, _ in scopes if rpm]
    counts, refused = ratelimit.hits(*(limit for _, limit in scoped))  # a refusal fills no counter
    if refused is not None:
        scope = next(scope for scope, limit in scoped if limit is refused)
        metrics.rate_limited(scope, "requests")
        raise RateLimited(scope, "requests", refused.limit, replace(quota, requests=(refused.limit, 0),
                                                                    tokens=_tightest(tokens)))
    requests = [(limit.limit, limit.limit - count) for (_, limit), count in zip(scoped, counts)]
    return replace(quota, requests=_tightest(requests), tokens=_tightest(tokens))


def count_tokens(quota: Optional[Quota], tokens: int, now: Optional[float] = None) -> None:
    """Count a settled call's tokens against the minute it settled in (only where a limit applies)."""
    if quota is None or tokens <= 0:
        return
    minute = int((clock() if now is None else now) // WINDOW)
    store = ratelimit.counters()
    for scope, ident, tpm in (("key", quota.key_id, quota.rates.key_tpm),
                              ("account", quota.account_id, quota.rates.account_tpm)):
        if tpm:
            store.hit(_name("t", scope, ident, minute), WINDOW, tokens)


# -- setting them -------------------------------------------------------------------------------

def _checked(value, what: str, *, minimum: int = 0, field: str = ""):
    if value is KEEP or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_PER_MINUTE:
        raise InvalidInput(f"{what} must be a whole number of at least {minimum}"
                           + (" (0: no limit)" if minimum == 0 else ""), field=field or what)
    return value


def fields(row) -> dict:
    return {"rpm_limit": row.rpm_limit, "tpm_limit": row.tpm_limit, "concurrency_limit": row.concurrency_limit}


def set_overrides(actor, user, key=None, *, rpm=KEEP, tpm=KEEP, concurrency=KEEP, reason: Optional[str] = None):
    """The operator's limits for `user`'s account, or for one of its keys when `key` is given.

    Each of rpm/tpm/concurrency: a number (rpm and tpm 0 for no limit), None for the configured
    default, KEEP to leave it. Audited with `reason`; returns a moderation.Outcome.
    """
    from . import audit
    from .moderation import Outcome

    reason = audit.require_reason(reason)
    rpm = _checked(rpm, "requests per minute", field="rpm")
    tpm = _checked(tpm, "tokens per minute", field="tpm")
    concurrency = _checked(concurrency, "calls at once", minimum=1, field="concurrency")
    if key is not None and key.user_id != user.id:
        raise InvalidInput(f"that key is not {user.email}'s")
    row = key if key is not None else user.account
    before = fields(row)
    for name, value in (("rpm_limit", rpm), ("tpm_limit", tpm), ("concurrency_limit", concurrency)):
        if value is not KEEP:
            setattr(row, name, value)
    after = fields(row)
    what = f"key {key.hint} of {user.email}" if key is not None else f"the account of {user.email}"
    if after == before:
        return Outcome(False, f"the limits of {what} are already so; nothing changed")
    audit.record(actor, "limits.set", "api_key" if key is not None else "account", row.id, reason=reason,
                 before=before, after=after)
    return Outcome(True, f"limits of {what}: {describe(after)}")


def describe(fields: dict) -> str:
    """'requests/min 600, tokens/min default, calls at once default' from a row's override fields."""
    def one(value, default="default"):
        return default if value is None else ("no limit" if value == 0 else f"{value:,}")
    return (f"requests/min {one(fields['rpm_limit'])}, tokens/min {one(fields['tpm_limit'])}, "
            f"calls at once {one(fields['concurrency_limit'])}")


def set_own(config, key, account, *, rpm: Optional[int], tpm: Optional[int]) -> None:
    """A key owner's own per-minute limits for the key: lower than what the operator allows, or None."""
    ceiling_rpm, ceiling_tpm = owner_ceiling(config, overrides_of(key, account))
    for value, ceiling, field, what in ((rpm, ceiling_rpm, "max_rpm", "Requests per minute"),
                                        (tpm, ceiling_tpm, "max_tpm", "Tokens per minute")):
        if value is None:
            continue
        most = ceiling or MAX_PER_MINUTE
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise InvalidInput(f"{what} must be a whole number from 1 to {most:,}, or empty for "
                               + (f"the platform's {ceiling:,}" if ceiling else "no limit of the key's own"),
                               field=field)
    key.max_rpm, key.max_tpm = rpm, tpm


def overrides_of(key, account) -> Overrides:
    """The Overrides of a key and its account, as loaded rows (the proxy reads them in its one query)."""
    return Overrides(account_rpm=account.rpm_limit, account_tpm=account.tpm_limit,
                     account_concurrency=account.concurrency_limit, key_rpm=key.rpm_limit, key_tpm=key.tpm_limit,
                     key_concurrency=key.concurrency_limit, own_rpm=key.max_rpm, own_tpm=key.max_tpm)
