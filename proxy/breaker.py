"""Circuit breakers, one per upstream, kept in this process's memory.

A circuit is closed while its upstream answers. After CIRCUIT_FAILURES failures in a row
(connect failures, timeouts before the first byte, 5xx and 429 answers) it opens: the router
sends nothing there for CIRCUIT_COOLDOWN_SECONDS. Then it is half-open: one call goes through as
a probe; its success closes the circuit, its failure opens it again for another cool-down.

The state is per process (each serving process learns on its own, in a few calls): the console
and /status show the view of the process that answers them. The clock is injected, so tests
move time instead of sleeping.
"""
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from portal import metrics

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"


@dataclass
class _Circuit:
    failures: int = 0                       # in a row, while closed
    opened_at: Optional[float] = None       # None: closed
    probe_since: Optional[float] = None     # a half-open probe call in flight since then


class Breakers:
    """Every upstream's circuit, by upstream name; thread-safe."""

    def __init__(self, failures: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._circuits: dict[str, _Circuit] = {}

    def _state(self, circuit: Optional[_Circuit], now: float) -> str:
        if circuit is None or circuit.opened_at is None:
            return CLOSED
        return OPEN if now < circuit.opened_at + self.cooldown else HALF_OPEN

    def state(self, name: str) -> str:
        """closed, open, or half_open (the cool-down is over: the next call is a probe)."""
        with self._lock:
            return self._state(self._circuits.get(name), self._clock())

    def states(self) -> dict[str, str]:
        """Each upstream this process has a circuit for, and its state (the others are closed)."""
        with self._lock:
            now = self._clock()
            return {name: self._state(circuit, now) for name, circuit in self._circuits.items()}

    def allows(self, name: str) -> bool:
        """May a call be sent there now: closed, or half-open with no probe in flight."""
        with self._lock:
            circuit = self._circuits.get(name)
            now = self._clock()
            state = self._state(circuit, now)
            return state == CLOSED or (state == HALF_OPEN and not self._probing(circuit, now))

    def _probing(self, circuit: _Circuit, now: float) -> bool:
        # A probe whose call never reported back (its process thread died) stops blocking after a cool-down.
        return circuit.probe_since is not None and now < circuit.probe_since + self.cooldown

    def reopens_at(self, name: str) -> float:
        """When an open circuit lets its probe through (now or earlier for the others)."""
        with self._lock:
            circuit = self._circuits.get(name)
            if circuit is None or circuit.opened_at is None:
                return float("-inf")
            return circuit.opened_at + self.cooldown

    def claim(self, name: str, *, force: bool = False) -> bool:
        """Take the right to send one call there: always while closed; the one probe while half-open.
        `force` sends even to an open circuit (the router's last resort when every circuit is open)."""
        with self._lock:
            circuit = self._circuits.get(name)
            now = self._clock()
            state = self._state(circuit, now)
            if state == CLOSED:
                return True
            if state == HALF_OPEN and self._probing(circuit, now) and not force:
                return False
            if state == OPEN and not force:
                return False
            circuit.probe_since = now
        metrics.circuit(name, HALF_OPEN)
        return True

    def succeeded(self, name: str) -> None:
        """The upstream answered (any status but 5xx or 429): its circuit closes."""
        with self._lock:
            circuit = self._circuits.get(name)
            if circuit is None or (circuit.failures == 0 and circuit.opened_at is None):
                return
            was_open = circuit.opened_at is not None
            self._circuits[name] = _Circuit()
        if was_open:
            metrics.circuit(name, CLOSED)

    def failed(self, name: str) -> None:
        """The upstream failed a call: count it, and open the circuit at the limit (or again after a probe)."""
        with self._lock:
            circuit = self._circuits.setdefault(name, _Circuit())
            now = self._clock()
            circuit.failures += 1
            circuit.probe_since = None
            if circuit.opened_at is None and circuit.failures < self.failures:
                return
            circuit.opened_at = now
        metrics.circuit(name, OPEN)
