"""Events the core reports as it serves, for metrics. ``gateway/metrics.py`` implements ``Observer``; the
core never imports a metrics library."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


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
