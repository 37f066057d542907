"""A circuit breaker for one remote server (``gateway.backends.triton``), on the monotonic clock.

Closed: traffic flows; ``failures`` consecutive failures open it. Open: no traffic for ``open_s``. Then
half-open: one trial request is admitted at a time (``admits`` is false while it runs); its success closes
the circuit and its failure opens it again for another ``open_s``. A successful health probe while
half-open closes it too (``probe_ok``). Rejections (the server refused the input) are neither: the caller
reports them as ``success``, since the server answered.

No I/O and no locks: it lives on the event loop, which is the only thing that touches it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class Circuit(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


CIRCUIT_GAUGE = {Circuit.CLOSED: 0, Circuit.HALF_OPEN: 1, Circuit.OPEN: 2}


class CircuitBreaker:
    def __init__(self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1:
            raise ValueError(f"breaker failures must be at least 1, not {failures}")
        if open_s < 0:
            raise ValueError(f"breaker open time must not be negative, not {open_s}")
        self.failures, self.open_s, self._clock = failures, open_s, clock
        self.consecutive = 0
        self._opened_at: float | None = None  # set while open or half-open
        self._trial = False  # a half-open trial request is in flight

    @property
    def state(self) -> Circuit:
        if self._opened_at is None:
            return Circuit.CLOSED
        if self._clock() - self._opened_at < self.open_s:
            return Circuit.OPEN
        return Circuit.HALF_OPEN

    def admits(self) -> bool:
        """Whether a request may be sent now (without taking the half-open trial)."""
        state = self.state
        return state is Circuit.CLOSED or (state is Circuit.HALF_OPEN and not self._trial)

    def begin(self) -> None:
        """A request is being sent: while half-open it is the one trial."""
        if self.state is Circuit.HALF_OPEN:
            self._trial = True

    def success(self) -> None:
        self.consecutive = 0
        self._opened_at, self._trial = None, False

    def failure(self) -> None:
        self.consecutive += 1
        state = self.state
        if state is Circuit.HALF_OPEN or (state is Circuit.CLOSED and self.consecutive >= self.failures):
            self._opened_at = self._clock()
        self._trial = False

    def abandon(self) -> None:
        """A request ended with neither verdict (cancelled by its caller): free the trial."""
        self._trial = False

    def probe_ok(self) -> None:
        """A health probe answered ready: closes a half-open circuit (an open one waits out ``open_s``)."""
        if self.state is Circuit.HALF_OPEN:
            self.success()
