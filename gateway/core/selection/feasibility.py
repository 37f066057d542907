"""Whether a variant can serve a request in time: the request's plan on each variant (the batches its
batcher would form, ``gateway.core.batching.formation``, at the latencies the ``LatencyModel`` predicts),
against its deadline minus the safety margin and the gateway's own overhead. Nanoseconds throughout."""

from __future__ import annotations

from gateway.core.batching.formation import Item, Latency, Plan, Rules, plan
from gateway.core.batching.padding import shape_signature
from gateway.core.selection.latency_model import LatencyModel
from gateway.core.selection.policy import Candidate, PolicyContext
from gateway.core.selection.slo import Reason, SloConfig


def predictor(latency: LatencyModel, c: Candidate, now_ns: int, quantile: float | None = None) -> Latency:
    return lambda rows: latency.predict_ns(c.model_name, rows, now_ns, quantile)


class Feasibility:
    """One request's predicted plan on each variant (``formation.plan``), computed when first asked."""

    def __init__(self, latency: LatencyModel, config: SloConfig, context: PolicyContext, overhead_ns: int):
        assert context.terms.slo_ns is not None
        self.slo_ns, self.client_deadline_ns = context.terms.slo_ns, context.terms.client_deadline_ns
        self.margin_ns = round(self.slo_ns * config.margin_fraction + config.margin_ms * 1e6)
        self.now_ns, self.overhead_ns = context.now_ns, overhead_ns
        self.plans: dict[str, Plan] = {}
        self._latency, self._rows = latency, context.rows
        self._shapes = {t.name: t.shape for t in context.request.inputs}

    def plan(self, c: Candidate) -> Plan:
        found = self.plans.get(c.model_name)
        if found is None:
            now, q = self.now_ns, c.queue
            new = Item(self._rows, shape_signature(c.config, self._shapes), now + self.slo_ns, now)
            found = self.plans[c.model_name] = plan(
                Rules.of(c.config),
                q.backlog() if q is not None else (),
                q.running() if q is not None else (),
                new,
                now,
                predictor(self._latency, c, now),
                typical=predictor(self._latency, c, now, 0.5),
                compute_ns=q.recent_compute_ns() if q is not None else 0,
                deadline_ns=self.client_deadline_ns,
            )
        return found

    def feasible(self, c: Candidate) -> bool:
        return self.plan(c).slack_ns(self.overhead_ns, self.margin_ns) >= 0


def first_feasible(
    f: Feasibility, within: list[Candidate], ci: int, aggressive: list[Candidate]
) -> tuple[Candidate | None, Reason]:
    for i, c in enumerate(within[ci:]):
        if f.feasible(c):
            return c, (Reason.SLO if i == 0 else Reason.STEP_DOWN)
    for c in within[:ci]:  # a more accurate variant above the ceiling with room to spare (the ceiling stays)
        if f.feasible(c):
            return c, Reason.OVERFLOW
    for c in aggressive:
        if f.feasible(c):
            return c, Reason.AGGRESSIVE
    return None, Reason.FASTEST
