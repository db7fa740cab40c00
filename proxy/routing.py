"""Which upstreams one call tries, in order: priority, weight, circuit state and affinity.

The routes of the lowest priority number whose circuits let calls through come first, in a
weighted random order; then the next priority's, and so on, up to UPSTREAM_MAX_ATTEMPTS. When
every route's circuit is open, the call still goes to the one whose cool-down ends first
(rather than refusing a call that might work): a model is refused only when the operator
disabled all its upstreams (portal.catalog.serving_model).

Affinity: a conversation's calls prefer the upstream that served its previous call, so the
provider's prompt cache keeps hitting. The conversation is the key and its hint (OpenAI's
`prompt_cache_key`, Anthropic's `metadata.user_id`, or none: the key alone), remembered by a
hash only, in a bounded per-process LRU.
"""
import hashlib
import json
import random
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Optional

from portal.catalog import ServingModel, ServingRoute

from .breaker import Breakers
from .rewrite import Rewritten

AFFINITY_ENTRIES = 50_000  # about 5 MB at most


def conversation(key_id: int, document: dict) -> str:
    """A hash naming the call's conversation (never the raw hint: it may be a user's id)."""
    hint = document.get("prompt_cache_key")
    if not isinstance(hint, str) or not hint:
        metadata = document.get("metadata")
        hint = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(hint, str):
        hint = ""
    return hashlib.sha256(f"{key_id}\0{hint}".encode()).hexdigest()[:32]


class Affinity:
    """Conversation hash -> the upstream id that served its last call; least recently used goes first."""

    def __init__(self, size: int = AFFINITY_ENTRIES):
        self._size = size
        self._lock = threading.Lock()
        self._served: OrderedDict[str, int] = OrderedDict()

    def get(self, conversation_id: str) -> Optional[int]:
        with self._lock:
            upstream_id = self._served.get(conversation_id)
            if upstream_id is not None:
                self._served.move_to_end(conversation_id)
            return upstream_id

    def remember(self, conversation_id: str, upstream_id: int) -> None:
        with self._lock:
            self._served[conversation_id] = upstream_id
            self._served.move_to_end(conversation_id)
            while len(self._served) > self._size:
                self._served.popitem(last=False)


class Router:
    def __init__(self, breakers: Breakers, max_attempts: int, *, rng: Optional[random.Random] = None,
                 affinity: Optional[Affinity] = None):
        self.breakers = breakers
        self.max_attempts = max_attempts
        self._rng = rng or random.Random()
        self.affinity = affinity or Affinity()

    def plan(self, model: ServingModel, conversation_id: Optional[str] = None) -> list[tuple[ServingRoute, bool]]:
        """The routes to try in order, each with whether it is forced past an open circuit."""
        routes = model.routes
        healthy = [r for r in routes if self.breakers.allows(r.upstream.name)]
        if not healthy:
            last_resort = min(routes, key=lambda r: self.breakers.reopens_at(r.upstream.name))
            return [(last_resort, True)]
        order: list[ServingRoute] = []
        for priority in sorted({r.priority for r in healthy}):
            order += self._weighted_order([r for r in healthy if r.priority == priority])
        if conversation_id is not None:
            served = self.affinity.get(conversation_id)
            best = order[0].priority
            preferred = next((r for r in order if r.upstream.id == served and r.priority == best), None)
            if preferred is not None:
                order.remove(preferred)
                order.insert(0, preferred)
        return [(r, False) for r in order[:self.max_attempts]]

    def _weighted_order(self, group: list[ServingRoute]) -> list[ServingRoute]:
        """A random order in which each next route is drawn with chance proportional to its weight."""
        left, order = list(group), []
        while left:
            pick = self._rng.choices(left, weights=[r.weight for r in left])[0] if len(left) > 1 else left[0]
            left.remove(pick)
            order.append(pick)
        return order

    def served(self, conversation_id: Optional[str], upstream_id: int) -> None:
        if conversation_id is not None:
            self.affinity.remember(conversation_id, upstream_id)


def for_route(body: Rewritten, route: ServingRoute) -> Rewritten:
    """The rewritten request pointed at this route's own name for the model."""
    if body.document.get("model") == route.upstream_model:
        return body
    document = {**body.document, "model": route.upstream_model}
    return replace(body, body=json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(),
                   document=document)
