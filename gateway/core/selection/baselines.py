"""Baseline policies, for comparison with ``SloPolicy`` (selected with ``VARIGATE_POLICY``):

- ``StaticPolicy``: always one named variant (``static:int8``), as every serving system does today; while
  that variant's circuit is open (``PolicyContext.avoided``), the most accurate of the others.
- ``InfaasPolicy``: INFaaS (ATC'21) style: among the variants whose latency at the request's batch size
  fits the SLO, the one with the least slack (the slowest that fits), skipping variants on its blacklist of
  overloaded ones; none fits: the fastest. A variant is blacklisted for ``blacklist_s`` when a request it
  served missed its SLO, or when its queue alone would take longer than the SLO. Its latencies are the card
  profile with the same online correction the SLO policies learn (``LatencyModel``, every pool mode
  together), so that it is a fair baseline; it checks no accuracy budget and binds each request at arrival.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from gateway.core.batching.formation import Rules
from gateway.core.errors import ModelNotReady
from gateway.core.selection.events import NullPolicyObserver, PolicyObserver
from gateway.core.selection.latency_model import ANY, NEVER, LatencyModel
from gateway.core.selection.policy import Candidate, MostAccuratePolicy, PolicyContext
from gateway.core.selection.variants import loss_of, ranked
from gateway.core.telemetry.observer import BatchEvent, Outcome, RequestEvent


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
    def __init__(
        self,
        blacklist_s: float = 2.0,
        observer: PolicyObserver | None = None,
        latency: LatencyModel | None = None,
    ) -> None:
        if blacklist_s < 0:
            raise ValueError(f"blacklist_s must be >= 0, got {blacklist_s}")
        self._blacklist_ns = round(blacklist_s * 1e9)
        self.latency = latency or LatencyModel()
        self._known: set[tuple[str, str]] = set()
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
        for c in pool:
            if (c.model_name, c.version) not in self._known:
                self._known.add((c.model_name, c.version))
                self.latency.know(c.model_name, c.card)
        profiled = [(c, self._predicted_ns(c, context.rows, now)) for c in ranked(pool, gate_first=True)]
        for c, _ in profiled:
            if c.queue is not None and self._queued_ns(c, now) > terms.slo_ns:
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

    def observe_batch(self, event: BatchEvent) -> None:
        if event.ok:
            measured = round(event.compute_s * 1e9)
            self.latency.record(event.model, event.rows, measured, time.monotonic_ns(), ANY, event.length)

    def _predicted_ns(self, c: Candidate, rows: int, now_ns: int) -> float:
        """The corrected p99 at ``rows`` (a variant without a profile counts as infinitely slow)."""
        if c.card is None or not c.card.profile:
            return math.inf
        return float(self.latency.predict_ns(c.model_name, rows, now_ns))

    def _queued_ns(self, c: Candidate, now_ns: int) -> float:
        """The queued work in batches of the variant's largest size (INFaaS' estimate)."""
        assert c.queue is not None
        rules = Rules.of(c.config)
        rows = sum(it.rows for it in c.queue.backlog()) + sum(r for r, _ in c.queue.running())
        if rows == 0:
            return 0.0
        batches = math.ceil(rows / rules.fire_rows)
        return batches * self._predicted_ns(c, min(rows, rules.fire_rows), now_ns) / rules.slots

    def _picked(self, logical: str, c: Candidate, reason: str) -> Candidate:
        self._observer.selection(logical, c.model_name, reason)
        return c
