"""Variant selection: which variant of a logical model serves a request.

A policy sees the READY variants of one logical model (their config, card and current load) and the
request, and returns one of them. It is consulted only when a client names a logical model; a client
that names a variant (``minilm.int8``) pins it and no policy runs. Policies plug into ``Service(policy=...)``
without the protocol adapters knowing; ``observe`` feeds them every finished request so a policy can
learn online (the SLO/load-aware policy of a later issue does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.core.batching.formation import Queued
from gateway.core.config import ModelConfig
from gateway.core.errors import ModelNotReady
from gateway.core.selection.slo import NO_TERMS, SloTerms
from gateway.core.telemetry.observer import BatchEvent, NullObserver, RequestEvent
from gateway.core.types import InferRequest
from varigate.contract.card import VariantCard
from varigate.contract.variants import REFERENCE_VARIANT


class QueueView(Protocol):
    """What a policy may read of a variant's batcher (``gateway.core.batching.batcher.Batcher`` is one)."""

    def backlog(self) -> Sequence[Queued]:
        """Every queued request (rows, signature, SLO deadline, when queued), in the order batches take
        them."""
        ...

    def running(self) -> Sequence[tuple[int, int]]:
        """``(rows, started_ns)`` of every batch executing now (``time.monotonic_ns()``)."""
        ...

    def recent_compute_ns(self) -> int:
        """The batcher's recent batch compute time (0 until a batch has run): when batches fire early."""
        ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """A READY variant at the version that would serve, with its load right now."""

    model_name: str  # "minilm.int8"
    variant: str  # "int8"
    version: str
    config: ModelConfig
    card: VariantCard | None
    queued: int  # requests waiting for a batch
    inflight: int  # accepted, not finished (queued included)
    queue: QueueView | None = None  # the variant's batcher, read-only


@dataclass(frozen=True, slots=True)
class PolicyContext:
    request: InferRequest
    rows: int  # batch elements the request carries
    now_ns: int  # time.monotonic_ns() when the request arrived
    terms: SloTerms = NO_TERMS  # SLO, accuracy floor, client deadline
    seq: int = 0  # the service's number for the request; its ``RequestEvent`` carries the same
    avoided: frozenset[str] = frozenset()  # READY variants left out of the candidates as unhealthy


class Policy(Protocol):
    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        """Return one of ``candidates`` (never empty), or raise a ``GatewayError`` (e.g. ``Overloaded``)."""
        ...

    def observe(self, event: RequestEvent) -> None:
        """Called once per finished request that a policy routed or that was pinned."""
        ...


@runtime_checkable
class BatchAware(Protocol):
    """A policy that also learns from every executed batch (the service feeds it when it has this)."""

    def observe_batch(self, event: BatchEvent) -> None: ...


class PolicyListener(NullObserver):
    """The policy's place on the core's ``Fanout``: every finished request goes to ``observe``, and every
    executed batch to ``observe_batch`` when the policy is ``BatchAware``."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._batches = policy if isinstance(policy, BatchAware) else None

    def request_done(self, event: RequestEvent) -> None:
        self._policy.observe(event)

    def batch_done(self, event: BatchEvent) -> None:
        if self._batches is not None:
            self._batches.observe_batch(event)


def accuracy_score(candidate: Candidate) -> float:
    """Comparable accuracy: 1 - relative loss against the fp32 reference. A variant without a card is
    the reference (1.0) when it is fp32, else unknown (-1.0, ranked last)."""
    if candidate.card is None:
        return 1.0 if candidate.variant == REFERENCE_VARIANT else -1.0
    return 1.0 - candidate.card.accuracy.relative_loss


class MostAccuratePolicy:
    """The most accurate READY variant: gate-passing cards first, then accuracy, then fp32, then name."""

    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        if not candidates:
            raise ModelNotReady(f"no variant of model {logical_model!r} is ready")
        return min(candidates, key=_rank)

    def observe(self, event: RequestEvent) -> None:
        pass


def _rank(c: Candidate) -> tuple[bool, float, bool, str]:
    """Ascending: gate passed, higher accuracy, the fp32 reference, then the model name."""
    gate_ok = c.card is None or c.card.gate.passed
    return (not gate_ok, -accuracy_score(c), c.variant != REFERENCE_VARIANT, c.model_name)
