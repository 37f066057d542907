"""Baseline policies, for comparison with ``SloPolicy`` (selected with ``VARIGATE_POLICY``):

- ``StaticPolicy``: always one named variant (``static:int8``), as every serving system does today; while
  that variant's circuit is open (``PolicyContext.avoided``), the most accurate of the others.
- ``InfaasPolicy``: INFaaS (ATC'21) style: among the variants whose *profiled* latency (card p99 at the
  request's batch size) fits the SLO, the one with the least slack (the slowest that fits), skipping
  variants on its blacklist of overloaded ones; none fits: the fastest profiled. A variant is blacklisted for
  ``blacklist_s`` when a request it served missed its SLO, or when its queue alone, at profiled speed, would
  take longer than the SLO. It learns nothing else online and checks no accuracy budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from gateway.core.batching.formation import Rules
from gateway.core.errors import ModelNotReady
from gateway.core.selection.events import NullPolicyObserver, PolicyObserver
from gateway.core.selection.latency_model import NEVER
from gateway.core.selection.policy import Candidate, MostAccuratePolicy, PolicyContext
from gateway.core.selection.variants import loss_of, ranked
from gateway.core.telemetry.observer import Outcome, RequestEvent


class StaticPolicy:
    def __init__(self, variant: str, observer: PolicyObserver | None = None) -> None:
        if not variant:
            raise ValueError("a static policy needs a variant name, e.g. 'int8'")
        self.variant = variant
        self._observer = observer or NullPolicyObserver()

    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        for c in candidates:
            if self.variant in (c.variant, c.model_name):
                self._observer.selection(logical_model, c.model_name, "static")
                return c
        if candidates and any(self.variant in (name, name.partition(".")[2]) for name in context.avoided):
            chosen = MostAccuratePolicy().choose(logical_model, candidates, context)
            self._observer.selection(logical_model, chosen.model_name, "static_unhealthy")
            return chosen
        ready = sorted(c.model_name for c in candidates)
        raise ModelNotReady(
            f"static policy variant {self.variant!r} of model {logical_model!r} is not ready; ready: {ready}"
        )

    def observe(self, event: RequestEvent) -> None:
        pass


class InfaasPolicy:
    def __init__(self, blacklist_s: float = 2.0, observer: PolicyObserver | None = None) -> None:
        if blacklist_s < 0:
            raise ValueError(f"blacklist_s must be >= 0, got {blacklist_s}")
        self._blacklist_ns = round(blacklist_s * 1e9)
        self._observer = observer or NullPolicyObserver()
        self._until: dict[str, int] = {}  # model -> blacklisted until (time.monotonic_ns())
        self._fallback = MostAccuratePolicy()

    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        terms, now = context.terms, context.now_ns
        pool = [c for c in candidates if terms.max_loss is None or loss_of(c) <= terms.max_loss]
        pool = pool or list(candidates)
        if terms.slo_ns is None:
            return self._picked(logical_model, self._fallback.choose(logical_model, pool, context), "no_slo")
        profiled = [(c, _profiled_ns(c, context.rows)) for c in ranked(pool, gate_first=True)]
        for c, _ in profiled:
            if c.queue is not None and _queued_ns(c) > terms.slo_ns:
                self._until[c.model_name] = now + self._blacklist_ns
        fits = [
            (latency, c)
            for c, latency in profiled
            if latency <= terms.slo_ns and self._until.get(c.model_name, NEVER) <= now
        ]
        if fits:
            return self._picked(logical_model, max(fits, key=lambda f: f[0])[1], "infaas_fit")
        open_ = [(lat, c) for c, lat in profiled if self._until.get(c.model_name, NEVER) <= now]
        fastest = min(open_ or [(lat, c) for c, lat in profiled], key=lambda f: f[0])[1]
        return self._picked(logical_model, fastest, "infaas_fastest")

    def observe(self, event: RequestEvent) -> None:
        late = event.outcome is Outcome.SUCCESS and event.slo_s > 0 and event.request_s > event.slo_s
        if late:
            self._until[event.model] = time.monotonic_ns() + self._blacklist_ns

    def _picked(self, logical: str, c: Candidate, reason: str) -> Candidate:
        self._observer.selection(logical, c.model_name, reason)
        return c


def _profiled_ns(c: Candidate, rows: int) -> float:
    """The card's p99 at ``rows`` (a variant without a profile counts as infinitely slow)."""
    if c.card is None or not c.card.profile:
        return math.inf
    return c.card.latency_ms(rows, "p99_ms") * 1e6


def _queued_ns(c: Candidate) -> float:
    """The queued work at profiled speed, in batches of the variant's largest size (INFaaS' estimate)."""
    assert c.queue is not None
    rules = Rules.of(c.config)
    rows = sum(it.rows for it in c.queue.backlog()) + sum(r for r, _ in c.queue.running())
    if rows == 0:
        return 0.0
    batches = math.ceil(rows / rules.fire_rows)
    return batches * _profiled_ns(c, min(rows, rules.fire_rows)) / rules.slots
