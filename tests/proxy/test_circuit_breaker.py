"""Circuit breakers: open after N failures in a row, one probe after the cool-down; time is injected."""
import random

import pytest
from prometheus_client import REGISTRY

from portal.catalog import ServingModel, ServingRoute, UpstreamInfo
from portal.pricing import Price
from proxy.breaker import CLOSED, HALF_OPEN, OPEN, Breakers
from proxy.routing import Router
from tests.proxy.conftest import wait_for_records
from tests.proxy.test_failover import call


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breakers(clock):
    return Breakers(failures=3, cooldown=30, clock=clock)


def gauge(name):
    return REGISTRY.get_sample_value("tollgate_circuit_state", {"upstream": name})


def test_opens_after_the_failures_in_a_row(breakers):
    for _ in range(2):
        breakers.failed("u1")
    assert breakers.state("u1") == CLOSED and breakers.allows("u1")
    breakers.failed("u1")
    assert breakers.state("u1") == OPEN and not breakers.allows("u1") and not breakers.claim("u1")
    assert gauge("u1") == 2


def test_a_success_resets_the_count(breakers):
    for _ in range(2):
        breakers.failed("u2")
    breakers.succeeded("u2")
    for _ in range(2):
        breakers.failed("u2")
    assert breakers.state("u2") == CLOSED


def test_half_open_lets_one_probe_through(breakers, clock):
    for _ in range(3):
        breakers.failed("u3")
    clock.now += 29.9
    assert breakers.state("u3") == OPEN
    clock.now += 0.2
    assert breakers.state("u3") == HALF_OPEN and breakers.allows("u3")
    assert breakers.claim("u3")
    assert gauge("u3") == 1
    assert not breakers.allows("u3") and not breakers.claim("u3")  # one probe at a time
    breakers.succeeded("u3")
    assert breakers.state("u3") == CLOSED and breakers.allows("u3") and gauge("u3") == 0


def test_a_failed_probe_opens_the_circuit_again(breakers, clock):
    for _ in range(3):
        breakers.failed("u4")
    clock.now += 31
    assert breakers.claim("u4")
    breakers.failed("u4")
    assert breakers.state("u4") == OPEN and breakers.reopens_at("u4") == clock.now + 30
    clock.now += 31
    assert breakers.state("u4") == HALF_OPEN


def test_a_probe_that_never_reports_back_stops_blocking(breakers, clock):
    for _ in range(3):
        breakers.failed("u5")
    clock.now += 31
    assert breakers.claim("u5")
    clock.now += 31
    assert breakers.allows("u5")


def _model(*names, priority=(1, 1, 1)):
    ups = [ServingRoute(UpstreamInfo(i, name, "openai", "http://x", None), f"m-{name}", p)
           for i, (name, p) in enumerate(zip(names, priority))]
    return ServingModel(1, "m", ups[0].upstream_model, 100, ups[0].upstream, 1, Price(input=1, output=1),
                        None, routes=tuple(ups))


def test_the_router_skips_open_circuits(breakers):
    router = Router(breakers, 3, rng=random.Random(1))
    for _ in range(3):
        breakers.failed("a")
    plan = router.plan(_model("a", "b", "c", priority=(1, 1, 2)))
    assert [r.upstream.name for r, _ in plan] == ["b", "c"]


def test_when_every_circuit_is_open_the_first_to_cool_down_is_tried(breakers, clock):
    router = Router(breakers, 3)
    for name in ("a", "b"):
        for _ in range(3):
            breakers.failed(name)
        clock.now += 5
    plan = router.plan(_model("b", "a"))
    assert [(r.upstream.name, forced) for r, forced in plan] == [("a", True)]


def test_the_gateway_stops_sending_to_an_open_circuit_and_probes_after_the_cool_down(
        app, gateway, fake, backup, key, clock):
    breakers = app.extensions["tollgate.gateway"].breakers
    breakers.failures, breakers._clock = 2, clock
    for _ in range(2):
        fake.next(status=503)
        assert call(gateway, key).status_code == 200
    assert breakers.state("fake-openai") == OPEN
    assert call(gateway, key).status_code == 200
    assert len(fake.received) == 2 and len(backup.received) == 3  # the open circuit was skipped
    [*_, skipped] = wait_for_records(3)
    assert [a["upstream"] for a in skipped.attempts] == ["fake-b"]
    clock.now += breakers.cooldown + 1
    assert breakers.state("fake-openai") == HALF_OPEN
    assert call(gateway, key).status_code == 200  # the probe, and it succeeds
    assert len(fake.received) == 3 and breakers.state("fake-openai") == CLOSED
