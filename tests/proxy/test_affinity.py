"""Affinity: a conversation's calls go back to the upstream that served its last call, while healthy."""
import pytest

from portal import catalog, routes
from portal.database import atomic
from proxy.routing import Affinity, conversation
from tests.proxy.conftest import wait_for_records
from tests.proxy.test_failover import CHAT_BODY, call


class Alternating:
    """An RNG stand-in: the first draw takes the first candidate, the next the last, and so on."""

    def __init__(self):
        self.draws = 0

    def choices(self, population, weights):
        self.draws += 1
        return [population[0] if self.draws % 2 else population[-1]]


@pytest.fixture
def equal(app, backup):
    """gpt-test on fake-openai and fake-b at one priority, the router's draws alternating."""
    with atomic():
        routes.update_route("gpt-test", "fake-b", priority=1)
    app.extensions["tollgate.gateway"].router._rng = Alternating()
    return backup


def served_by(count):
    ids = {catalog.find_upstream(n).id: n for n in ("fake-openai", "fake-b")}
    return [ids[r.upstream_id] for r in wait_for_records(count)]


def test_a_conversation_stays_on_the_upstream_that_served_it(gateway, equal, key):
    body = {**CHAT_BODY, "prompt_cache_key": "conversation-1"}
    for _ in range(4):
        assert call(gateway, key, body=body).status_code == 200
    assert len(set(served_by(4))) == 1


def test_without_affinity_the_draws_alternate(gateway, equal, key):
    # The control for the test above: different conversations follow the router's draws.
    for n in range(2):
        assert call(gateway, key, body={**CHAT_BODY, "prompt_cache_key": f"c{n}"}).status_code == 200
    assert len(set(served_by(2))) == 2


def test_affinity_gives_way_to_an_open_circuit(app, gateway, fake, equal, key):
    body = {**CHAT_BODY, "prompt_cache_key": "conversation-2"}
    assert call(gateway, key, body=body).status_code == 200
    [first] = served_by(1)
    breakers = app.extensions["tollgate.gateway"].breakers
    for _ in range(breakers.failures):
        breakers.failed(first)
    assert call(gateway, key, body=body).status_code == 200
    assert served_by(2)[1] != first


def test_affinity_only_within_the_best_priority(app, gateway, fake, backup, key):
    # fake-b is the fallback (priority 2): a conversation it served once returns to fake-openai.
    body = {**CHAT_BODY, "prompt_cache_key": "conversation-3"}
    fake.next(status=503)
    assert call(gateway, key, body=body).status_code == 200
    assert call(gateway, key, body=body).status_code == 200
    assert served_by(2) == ["fake-b", "fake-openai"]


def test_the_conversation_is_named_by_a_hash_of_key_and_hint():
    openai = conversation(7, {"prompt_cache_key": "secret-user-42"})
    anthropic = conversation(7, {"metadata": {"user_id": "secret-user-42"}})
    assert openai == anthropic != conversation(8, {"prompt_cache_key": "secret-user-42"})
    assert conversation(7, {}) == conversation(7, {"metadata": {"user_id": 5}}) != openai  # the key alone
    assert "secret-user-42" not in openai and "7" != openai


def test_the_memory_is_bounded():
    affinity = Affinity(size=2)
    affinity.remember("a", 1)
    affinity.remember("b", 2)
    assert affinity.get("a") == 1  # a is now the most recent
    affinity.remember("c", 3)
    assert (affinity.get("a"), affinity.get("b"), affinity.get("c")) == (1, None, 3)
