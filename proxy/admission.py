"""Everything decided before money moves: who the key speaks for, which model, and whether there is room.

Capacity is counted per process: every call in flight holds one slot of the process, one of its
account's and one of its key's. A slot is taken before the hold and given back when the call is
settled, so one account can never take all of a process's call slots from everyone else.
Rates per minute are counted in proxy/rates.py (shared by every process), before the slot is taken.
"""
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Optional

from portal import apikeys, apilimits, catalog, metrics
from portal.config import call_limits
from portal.errors import AccountNotVerified, AccountSuspended, KeyExpired, KeyRejected, UnknownModel
from portal.models import utcnow

from . import translate
from .errors import ApiError, _, sentences
from .protocols import ROUTES, Route

RETRY_AFTER_SECONDS = "1"


def sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "。")) else ".")


def authenticate(api_key: Optional[str], client_ip: Optional[str]) -> apikeys.Caller:
    """The caller behind `api_key`, allowed from `client_ip`, or an ApiError saying what to fix."""
    try:
        caller = apikeys.authenticate(api_key)
    except KeyExpired as exc:  # an expiry date is a limit the key's owner set: 403 like the others
        raise ApiError(403, sentences(sentence(exc), _("Set a later expiry date in the portal, or use another key."))
                       ) from None
    except (AccountSuspended, AccountNotVerified) as exc:
        raise ApiError(403, sentence(exc)) from None
    except KeyRejected as exc:
        hint = (_("Send your key as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.") if api_key is None
                else _("Check the key, or create a new one in the portal."))
        raise ApiError(401, sentences(sentence(exc), hint)) from None
    if not caller.may_call_from(client_ip):
        raise ApiError(403, _("This API key may not be used from %(address)s; change the key's IP allow-list in "
                              "the portal.", address=client_ip or _("an unknown address")))
    return caller


class ModelCache:
    """Serving models for a few seconds, so a call costs no catalog query.

    An entry lives the TTL, and never past the moment its model's next price takes effect; a change
    made in this process clears the cache when it commits (`clear`, via catalog.on_change). Changes
    made by other processes show within the TTL.
    """

    def __init__(self, ttl: float):
        self._ttl = ttl
        self._entries: dict[str, tuple[float, catalog.ServingModel]] = {}

    def get(self, public_id: str) -> catalog.ServingModel:
        now = time.monotonic()
        hit = self._entries.get(public_id)
        if hit is not None and hit[0] > now and (hit[1].price_until is None or utcnow() < hit[1].price_until):
            return hit[1]
        model = catalog.serving_model(public_id)
        self._entries[public_id] = (now + self._ttl, model)
        return model

    def clear(self) -> None:
        self._entries = {}


def choose_model(caller: apikeys.Caller, route: Route, document: dict, models: ModelCache) -> catalog.ServingModel:
    public_id = document.get("model")
    if not isinstance(public_id, str) or not public_id:
        raise ApiError(400, _("model: Field required (a model id from GET /v1/models)."))
    if not caller.may_use(public_id):
        raise ApiError(403, _("This API key may not use the model '%(model)s'; change the key's allowed "
                              "models in the portal.", model=public_id))
    try:
        model = models.get(public_id)
    except catalog.UpstreamDisabled as exc:  # paused by the operator: there, but not now
        raise ApiError(503, str(exc), code="model_unavailable") from None
    except UnknownModel as exc:
        raise ApiError(404, str(exc)) from None
    # Translation (proxy/translate/) lets most routes reach any upstream; those that cannot serve
    # this route (embeddings from an Anthropic upstream) are left out of this call's routes.
    routes = tuple(r for r in model.routes if translate.serves(route.name, r.upstream))
    if not routes:
        protocol = model.upstream.protocol
        served = [f"/v1{r.path}" for r in ROUTES.values() if r.billed and translate.serves(r.name, model.upstream)]
        raise ApiError(400, _("The model '%(model)s' is served over the %(protocol)s API; call %(route)s instead.",
                              model=public_id, protocol=protocol, route=", ".join(served) or _("another route")))
    if routes != model.routes:
        model = replace(model, routes=routes, upstream=routes[0].upstream, upstream_model=routes[0].upstream_model)
    return model


@dataclass(frozen=True)
class Limits:
    """Calls in flight at once, per process: in all, per account, per key (a key's own limit may be lower)."""

    total: int
    per_account: int
    per_key: int

    @classmethod
    def from_config(cls, config) -> "Limits":
        return cls(*call_limits(config))


class Slot:
    """One call's place in the process; give it back exactly once."""

    def __init__(self, capacity: "Capacity", account_id: int, key_id: int):
        self._capacity, self._account_id, self._key_id = capacity, account_id, key_id
        self._held = True
        self.quota = None  # the call's per-minute standing (proxy/rates.py), its tokens counted at settlement

    def release(self) -> None:
        if self._held:
            self._held = False
            self._capacity._give_back(self._account_id, self._key_id)


class Capacity:
    def __init__(self, limits: Limits):
        self.limits = limits
        self._lock = threading.Lock()
        self._in_flight = 0
        self._accounts: Counter = Counter()
        self._keys: Counter = Counter()

    def take(self, caller: apikeys.Caller) -> Slot:
        """A slot for one call of `caller`, or ApiError 429 (their own limit) or 503 (the process is full)."""
        # The operator's overrides for the account or the key (apilimits) replace the configured limits.
        per_account, per_key = apilimits.concurrency(self.limits.per_account, self.limits.per_key, self.limits.total,
                                                     caller.overrides)
        limits = replace(self.limits, per_account=per_account, per_key=per_key)
        key_limit = min(caller.max_concurrency or limits.per_key, limits.per_key)
        with self._lock:
            if self._accounts[caller.account_id] >= limits.per_account:
                metrics.rate_limited("account", "concurrency")
                refusal = ApiError(429, _("Your account already has %(count)s calls in progress, its limit; wait "
                                          "for one to finish.", count=limits.per_account),
                                   code="concurrency_limit_exceeded",
                                   headers={"Retry-After": RETRY_AFTER_SECONDS})
            elif self._keys[caller.key_id] >= key_limit:
                metrics.rate_limited("key", "concurrency")
                refusal = ApiError(429, sentences(
                    _("This API key already has %(count)s calls in progress, its limit; wait for one to finish.",
                      count=key_limit),
                    _("The key's limit can be raised in the portal.") if key_limit < limits.per_key else ""),
                                   code="concurrency_limit_exceeded", headers={"Retry-After": RETRY_AFTER_SECONDS})
            elif self._in_flight >= limits.total:
                refusal = ApiError(503, _("The gateway is at capacity; retry in a few seconds."),
                                   headers={"Retry-After": "2"})
            else:
                self._in_flight += 1
                self._accounts[caller.account_id] += 1
                self._keys[caller.key_id] += 1
                return Slot(self, caller.account_id, caller.key_id)
        raise refusal

    def _give_back(self, account_id: int, key_id: int) -> None:
        with self._lock:
            self._in_flight -= 1
            for counter, name in ((self._accounts, account_id), (self._keys, key_id)):
                counter[name] -= 1
                if counter[name] <= 0:
                    del counter[name]  # idle accounts and keys cost no memory

    def in_flight(self) -> int:
        return self._in_flight
