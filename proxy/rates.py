"""The /v1 side of the per-minute limits (portal/apilimits.py): admit a call, the 429, the headers.

The headers are the ones the official SDKs and their users read: OpenAI's x-ratelimit-* with
reset as a duration ("1s", "6m0s", "20ms"), Anthropic's anthropic-ratelimit-* with reset as an
RFC 3339 time, and Retry-After in whole seconds on a refusal. They go on refusals and on
successful responses alike, for the tightest limit of each kind that applies (none when no
limit of that kind does).
"""
import math
from datetime import datetime, timezone
from typing import Optional

from flask import current_app

from portal import apilimits, apikeys

from .errors import ANTHROPIC, ApiError, _, sentences


def duration(seconds: float) -> str:
    """A wait in OpenAI's header format (Go's duration): "20ms", "1s", "59s", "1m0s", "6m0s"."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def headers(quota: Optional[apilimits.Quota], shape: str, now: Optional[float] = None) -> dict:
    """The rate-limit headers for `quota` in the route's family (none when nothing is limited)."""
    if quota is None:
        return {}
    now = apilimits.clock() if now is None else now
    wait = max(0.0, quota.reset_at - now)
    out = {}
    for kind, pair in (("requests", quota.requests), ("tokens", quota.tokens)):
        if pair is None:
            continue
        limit, remaining = pair
        if shape == ANTHROPIC:
            out[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{kind}-remaining"] = str(remaining)
            out[f"anthropic-ratelimit-{kind}-reset"] = rfc3339(quota.reset_at)
        else:
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            out[f"x-ratelimit-reset-{kind}"] = duration(wait)
    return out


def admit(caller: apikeys.Caller, shape: str) -> apilimits.Quota:
    """Count the call against its per-minute limits, or an ApiError 429 with the headers."""
    limits = apilimits.rates(current_app.config, caller.overrides)
    try:
        return apilimits.admit(caller.account_id, caller.key_id, limits)
    except apilimits.RateLimited as exc:
        now = apilimits.clock()
        wait = max(1, math.ceil(exc.quota.reset_at - now))
        values = {"limit": f"{exc.limit:,}", "wait": wait}
        if exc.scope == "key":
            refusal = (_("This API key has reached its limit of %(limit)s requests per minute; retry in %(wait)s "
                         "seconds.", **values) if exc.kind == "requests" else
                       _("This API key has reached its limit of %(limit)s tokens per minute; retry in %(wait)s "
                         "seconds.", **values))
        else:
            refusal = (_("Your account has reached its limit of %(limit)s requests per minute; retry in %(wait)s "
                         "seconds.", **values) if exc.kind == "requests" else
                       _("Your account has reached its limit of %(limit)s tokens per minute; retry in %(wait)s "
                         "seconds.", **values))
        advice = (_("The key's own limit can be raised in the portal.") if exc.scope == "key"
                  and _owner_lowered(caller, exc.kind) else "")
        raise ApiError(429, sentences(refusal, advice), code="rate_limit_exceeded",
                       headers={"Retry-After": str(wait), **headers(exc.quota, shape, now)}) from None


def _owner_lowered(caller: apikeys.Caller, kind: str) -> bool:
    own = caller.overrides.own_rpm if kind == "requests" else caller.overrides.own_tpm
    return own is not None


def tokens_charged(usage, bounds) -> int:
    """A settled call's tokens as charged: every input- and output-side class, cut to the request's bounds."""
    from portal.calls import clamp

    if usage is None:
        return 0
    charged = clamp(usage, bounds)
    return charged.input_side + charged.output_side


def settled(quota: Optional[apilimits.Quota], usage, bounds) -> None:
    """Count a settled call's tokens (a failure here never fails the call: the limits fail open)."""
    if quota is None or not (quota.rates.key_tpm or quota.rates.account_tpm):
        return
    apilimits.count_tokens(quota, tokens_charged(usage, bounds))
