"""Variant health: a circuit breaker per variant, so requests to a logical model route around a variant
whose backend fails or hangs.

Every executed batch reports its outcome (``BatchEvent.ok``; a batch that ran past the deadlines of all of
its requests reports a failure at that moment, see ``gateway.core.batching.batcher``). After
``failures_to_open`` consecutive failures of a variant its circuit **opens**: the service leaves it out of
the candidates the policy sees for ``cooldown_s``. Then it is **half open**: the next request to the logical
model may go to it (the probe; one at a time, a new probe after another ``cooldown_s`` without an outcome).
A successful batch, the probe's or a pinned request's, closes the circuit; a failure opens it again for
``cooldown_s``. Requests that pin a variant always go to it and get its own error. A variant with a batch
running past its requests' deadlines is avoided too while that batch runs (its instance is stuck). When
every variant of a logical model is avoided, the policy sees them all (trying is better than refusing
everyone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from gateway.core.telemetry.observer import BatchEvent, NullObserver

log = logging.getLogger(__name__)


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    failures_to_open: int = 3  # consecutive failed or timed-out batches
    cooldown_s: float = 5.0

    def __post_init__(self) -> None:
        if self.failures_to_open < 1 or not self.cooldown_s > 0:
            raise ValueError(f"invalid {self}: need failures_to_open >= 1, cooldown_s > 0")


@runtime_checkable
class HealthObserver(Protocol):
    """Told when a variant's circuit opens (``True``) or closes (``False``); ``gateway/metrics.py`` is one."""

    def circuit_changed(self, logical_model: str, model: str, open_: bool) -> None: ...


@dataclass(slots=True)
class _Breaker:
    logical_model: str
    state: Circuit = Circuit.CLOSED
    failures: int = 0  # consecutive
    opened_s: float = 0.0
    probe_s: float | None = None  # when the probe was let through (half open)


class Health(NullObserver):
    """The breakers of every variant, fed by batch events (a listener on the core's ``Fanout``); the data
    plane asks ``routable`` before the policy chooses."""

    def __init__(
        self,
        config: HealthConfig | None = None,
        observer: HealthObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or HealthConfig()
        self._observer = observer
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}

    def state(self, model: str) -> Circuit:
        b = self._breakers.get(model)
        if b is None:
            return Circuit.CLOSED
        if b.state is Circuit.OPEN and self._clock() - b.opened_s >= self.config.cooldown_s:
            b.state, b.probe_s = Circuit.HALF_OPEN, None
        return b.state

    def routable(self, model: str) -> bool:
        """Whether the policy may send a request to ``model`` now (half open: the one probe)."""
        state = self.state(model)
        if state is Circuit.CLOSED:
            return True
        if state is Circuit.OPEN:
            return False
        b = self._breakers[model]
        now = self._clock()
        if b.probe_s is not None and now - b.probe_s < self.config.cooldown_s:
            return False  # a probe is out; wait for its batch
        b.probe_s = now
        log.info("variant %s: circuit half open, sending one probe request", model)
        return True

    def batch_done(self, event: BatchEvent) -> None:
        b = self._breakers.setdefault(event.model, _Breaker(event.logical_model))
        if event.ok:
            b.failures = 0
            if b.state is not Circuit.CLOSED:
                b.state, b.probe_s = Circuit.CLOSED, None
                log.warning("variant %s: a batch succeeded, circuit closed", event.model)
                self._tell(b, event.model, False)
            return
        b.failures += 1
        if b.failures < self.config.failures_to_open:
            return
        was = b.state
        b.state, b.opened_s, b.probe_s = Circuit.OPEN, self._clock(), None
        if was is Circuit.CLOSED:
            log.warning(
                "variant %s: %d consecutive batches failed, circuit open for %g s",
                event.model,
                b.failures,
                self.config.cooldown_s,
            )
            self._tell(b, event.model, True)

    def model_state(self, model: str, version: str, ready: bool) -> None:
        if not ready:  # the variant was unloaded: a reload starts closed
            self.forget(model)

    def forget(self, model: str) -> None:
        b = self._breakers.pop(model, None)
        if b is not None and b.state is not Circuit.CLOSED:
            self._tell(b, model, False)

    def _tell(self, b: _Breaker, model: str, open_: bool) -> None:
        if self._observer is not None:
            self._observer.circuit_changed(b.logical_model, model, open_)
