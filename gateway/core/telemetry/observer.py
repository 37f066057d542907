"""Events the core reports as it serves, and the one fan-out that delivers them.

Batchers report batches, queue changes and model states; the data plane reports finished requests. All of
them go to one ``Fanout``, which hands each event to every listener in order: Triton's statistics, the
circuit breakers, the policy (``selection.policy.PolicyListener``) and the metrics (``gateway/metrics.py``
implements ``Observer``; the core never imports a metrics library). A listener overrides only what it needs
of ``NullObserver``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.core.batching.queue import BatchResult


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One request finished, after it was routed to a variant."""

    logical_model: str
    model: str  # the variant's Triton model name, e.g. "minilm.int8"
    version: str
    protocol: str  # "http" / "grpc"
    outcome: Outcome
    reason: str  # "" on success, else GatewayError.reason ("rejected", "timeout", "backend", ...)
    rows: int
    request_s: float  # end to end inside the service
    queue_s: float  # 0 when the request never left the queue
    compute_s: float  # of the batch the request ran in; 0 when it never ran
    slo_s: float = 0.0  # the request's latency SLO; 0 = none
    slo_met: bool | None = None  # None without an SLO; a failed request missed it
    seq: int = 0  # the service's number for the request (``PolicyContext.seq``); 0 = unnumbered
    result: BatchResult | None = None  # its batch's timings (Triton's statistics); None when it never ran


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """One batch executed (or failed) on a backend."""

    logical_model: str
    model: str
    version: str
    rows: int
    requests: int
    compute_s: float
    ok: bool
    mode: str = ""  # how it ran on the compute pool (``batching.pool``: wide, narrow, fixed)
    length: int = 0  # its padded sequence length (0: the model has no variable dimension)
    predicted_s: float = 0.0  # what the late-binding scheduler predicted for it (0: it predicted nothing)


class Observer(Protocol):
    def request_done(self, event: RequestEvent) -> None: ...

    def batch_done(self, event: BatchEvent) -> None: ...

    def queue_changed(self, logical_model: str, model: str, version: str, queued: int, inflight: int) -> None:
        """``queued`` waits for a batch; ``inflight`` was accepted and has not finished (queued included)."""
        ...

    def model_state(self, model: str, version: str, ready: bool) -> None: ...


class NullObserver:
    def request_done(self, event: RequestEvent) -> None:
        pass

    def batch_done(self, event: BatchEvent) -> None:
        pass

    def queue_changed(self, logical_model: str, model: str, version: str, queued: int, inflight: int) -> None:
        pass

    def model_state(self, model: str, version: str, ready: bool) -> None:
        pass


class Fanout:
    """Every event to every listener, in order (one listener's exception is not caught: listeners are the
    core's own and must not raise)."""

    def __init__(self, listeners: Sequence[Observer]) -> None:
        self._listeners = tuple(listeners)

    def request_done(self, event: RequestEvent) -> None:
        for listener in self._listeners:
            listener.request_done(event)

    def batch_done(self, event: BatchEvent) -> None:
        for listener in self._listeners:
            listener.batch_done(event)

    def queue_changed(self, logical_model: str, model: str, version: str, queued: int, inflight: int) -> None:
        for listener in self._listeners:
            listener.queue_changed(logical_model, model, version, queued, inflight)

    def model_state(self, model: str, version: str, ready: bool) -> None:
        for listener in self._listeners:
            listener.model_state(model, version, ready)
