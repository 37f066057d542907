"""The SLO- and load-aware policy: per request, the most accurate variant that meets its SLO under the
current load, inside an accuracy budget, without flapping.

- **Eligible variants**: READY, gate passed, not demoted by the drift monitor, not dominated (another
  variant is at least as accurate and at least as fast at every profiled batch size, e.g. fp16 on a CPU;
  left out and reported), and within the request's ``max_accuracy_loss``. Ordered by accuracy.
- **Feasible**: the variant's queue, run in the batches its batcher would form at the latencies the
  ``LatencyModel`` predicts, ends the request's batch by its deadline minus a safety margin (a fraction of
  the SLO plus a fixed part), counting the gateway's own measured overhead
  (``gateway.core.batching.formation``).
- **Ceiling and hysteresis**: the policy keeps a ceiling per logical model and picks the most accurate
  feasible variant at or below it. When the ceiling is infeasible it steps down at once to what was picked.
  It steps up one variant only after the arrival rate has stayed below ``1 - headroom`` of the upper
  variant's SLO capacity for ``step_up_after_s``, and at least ``min_dwell_s`` after the last switch. When
  nothing at or below the ceiling is feasible, a feasible variant above it takes the request (overflow:
  its instance is idle while the faster one is saturated); the ceiling stays.
- **Budget**: variants whose card loss exceeds ``accuracy_budget`` are aggressive: used only when no variant
  within the budget is feasible and the running mean loss of routed requests (exponentially weighted over
  ``budget_window`` requests) stays within the budget with this request.
- **Nothing feasible**: the variant with the earliest predicted answer (served late), or per ``infeasible``:
  ``reject`` refuses with ``Overloaded`` a request that could not be in time even alone on an idle variant,
  ``shed`` also one that the queues make late everywhere; a request the client's own deadline cannot wait
  for gets ``DeadlineExceeded``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.core.batching.formation import Latency, Plan, Shape, capacity, plan
from gateway.core.drift.monitor import DriftMonitor
from gateway.core.errors import DeadlineExceeded, ModelNotReady, Overloaded
from gateway.core.selection.events import NullPolicyObserver, PolicyObserver
from gateway.core.selection.latency_model import LatencyModel, Window
from gateway.core.selection.policy import Candidate, PolicyContext
from gateway.core.selection.slo import Infeasible, Reason, SloConfig
from gateway.core.selection.variants import dominated_variants, loss_of, ranked
from gateway.core.telemetry.observer import BatchEvent, Outcome, RequestEvent
from varigate.contract.variants import REFERENCE_VARIANT

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Model:
    key: frozenset[tuple[str, str, bool]]  # (model, version, demoted) the order was built for
    order: list[str]  # eligible variants, most accurate first
    loss: dict[str, float]
    ceiling: str
    overhead: Window
    switched_s: float = -math.inf
    headroom_since_s: float | None = None
    loss_ewma: float = 0.0  # of routed requests' card loss, started at 0 (``SloPolicy._mean`` corrects it)
    routed: int = 0
    arrivals: deque[tuple[float, int]] = field(default_factory=deque)
    mix: deque[tuple[float, str]] = field(default_factory=deque)
    mix_reported_s: float = -math.inf


class SloPolicy:
    def __init__(
        self,
        config: SloConfig | None = None,
        *,
        latency: LatencyModel | None = None,
        drift: DriftMonitor | None = None,
        observer: PolicyObserver | None = None,
    ) -> None:
        self.config = config or SloConfig()
        self.latency = latency or LatencyModel()
        self._drift = drift
        self._observer = observer or NullPolicyObserver()
        self._models: dict[str, _Model] = {}
        self._known: set[str] = set()  # variants whose card the latency model has
        self._pending: dict[int, tuple[str, str, float]] = {}  # seq -> (logical, model, predicted_s)
        self._reported: dict[tuple[str, str], str] = {}  # (logical, dominated model) -> by

    # -- Policy -----------------------------------------------------------------------------------------

    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        if not candidates:
            raise ModelNotReady(f"no variant of model {logical_model!r} is ready")
        cfg, terms, now = self.config, context.terms, context.now_s
        m = self._model(logical_model, candidates)
        m.arrivals.append((now, context.rows))
        while now - m.arrivals[0][0] > cfg.rate_window_s:
            m.arrivals.popleft()
        if terms.client_deadline_s is not None and now >= terms.client_deadline_s:
            self._observer.rejection(logical_model, "deadline")
            raise DeadlineExceeded(f"request for model {logical_model!r} arrived after the client's deadline")
        usable = self._usable(m, candidates, terms.max_loss)
        if terms.slo_s is None:
            return self._pick(m, logical_model, usable[0], Reason.NO_SLO, context, None)
        deadline = now + terms.slo_s
        if terms.client_deadline_s is not None:
            deadline = min(deadline, terms.client_deadline_s)
        margin = terms.slo_s * cfg.margin_fraction + cfg.margin_ms / 1000
        overhead = m.overhead.quantile(0.95) if len(m.overhead) else 0.0
        within = [c for c in usable if m.loss[c.model_name] <= cfg.accuracy_budget] or usable
        aggressive = [c for c in usable if c not in within and self._admits(m, c)]
        names = [c.model_name for c in within]
        ci = names.index(m.ceiling) if m.ceiling in names else 0
        ci = self._step_up(m, logical_model, within, ci, terms.slo_s - margin - overhead, now)
        plans: dict[str, Plan] = {}

        def slack(c: Candidate) -> float:
            if c.model_name not in plans:
                tail, typical = self._predictor(c, now), self._predictor(c, now, 0.5)
                plans[c.model_name] = plan(
                    Shape.of(c.config), c.queue, context.rows, deadline, now, tail, typical
                )
            return plans[c.model_name].slack_s(overhead, margin)

        chosen, reason = None, Reason.SLO
        for i, c in enumerate(within[ci:]):
            if slack(c) >= 0:
                chosen, reason = c, (Reason.SLO if i == 0 else Reason.STEP_DOWN)
                break
        if chosen is None:  # a more accurate variant above the ceiling with room to spare (the ceiling stays)
            chosen = next((c for c in within[:ci] if slack(c) >= 0), None)
            reason = Reason.OVERFLOW
        if chosen is None:
            chosen = next((c for c in aggressive if slack(c) >= 0), None)
            reason = Reason.AGGRESSIVE
        if chosen is None:  # late everywhere: the earliest answer (instances of other variants may be idle)
            pool = within + aggressive
            for c in pool:
                slack(c)
            chosen, reason = min(pool, key=lambda c: plans[c.model_name].finish_s), Reason.FASTEST
            self._refuse(logical_model, terms.slo_s, margin, terms.client_deadline_s, now, overhead, plans)
        index = names.index(chosen.model_name) if chosen.model_name in names else len(names) - 1
        if index > ci:
            self._switch(m, logical_model, names[ci], names[index], "down", now)
        predicted = plans[chosen.model_name].finish_s - now + overhead
        return self._pick(m, logical_model, chosen, reason, context, predicted)

    def observe(self, event: RequestEvent) -> None:
        pending = self._pending.pop(event.seq, None) if event.seq else None
        if event.outcome is not Outcome.SUCCESS:
            return
        if pending is not None:
            self._observer.prediction(pending[0], pending[1], pending[2], event.request_s)
        m = self._models.get(event.logical_model)
        if m is not None:
            m.overhead.add(time.monotonic(), max(0.0, event.request_s - event.queue_s - event.compute_s))

    def observe_batch(self, event: BatchEvent) -> None:
        if event.ok and event.model in self._known:
            self.latency.record(event.model, event.rows, event.compute_s, time.monotonic())

    # -- internals --------------------------------------------------------------------------------------

    def _model(self, logical: str, candidates: Sequence[Candidate]) -> _Model:
        """The logical model's state; its variant order is rebuilt when the READY versions or the demoted
        set change (a demoted variant dominates nothing)."""
        key = frozenset((c.model_name, c.version, self._demoted(c)) for c in candidates)
        m = self._models.get(logical)
        if m is not None and m.key == key:
            return m
        before = {(name, version) for name, version, _ in (m.key if m else ())}
        for c in candidates:
            if c.model_name in {n for n, _ in before} and (c.model_name, c.version) not in before:
                self.latency.forget(c.model_name)  # reloaded: new files, new speed
            self.latency.know(c.model_name, c.card)
            self._known.add(c.model_name)
        healthy = [c for c in candidates if not self._demoted(c)]
        beaten = dominated_variants(healthy)
        self._report_dominated(logical, beaten)
        order = [c.model_name for c in ranked(healthy) if c.model_name not in beaten]
        ceiling = m.ceiling if m is not None and m.ceiling in order else (order[0] if order else "")
        fresh = _Model(key, order, {c.model_name: loss_of(c) for c in candidates}, ceiling, Window(256, 15.0))
        if m is not None:
            fresh.switched_s, fresh.loss_ewma, fresh.routed, fresh.arrivals, fresh.mix = (
                m.switched_s, m.loss_ewma, m.routed, m.arrivals, m.mix
            )  # fmt: skip
            fresh.overhead = m.overhead
        self._models[logical] = fresh
        return fresh

    def _report_dominated(self, logical: str, beaten: dict[str, str]) -> None:
        for model, name in list(self._reported):
            if model == logical and name not in beaten:
                del self._reported[(model, name)]
                self._observer.dominated(logical, name, "")
        for name, by in sorted(beaten.items()):
            if self._reported.get((logical, name)) != by:
                self._reported[(logical, name)] = by
                log.info("variant %s of %s is dominated by %s: left out", name, logical, by)
                self._observer.dominated(logical, name, by)

    def _usable(self, m: _Model, candidates: Sequence[Candidate], max_loss: float | None) -> list[Candidate]:
        by_name = {c.model_name: c for c in candidates}
        usable = [by_name[n] for n in m.order if n in by_name and not self._demoted(by_name[n])]
        if max_loss is not None:
            usable = [c for c in usable if m.loss[c.model_name] <= max_loss]
        if usable:
            return usable
        fallback = ranked(candidates, gate_first=True)  # nothing eligible: the most accurate READY one
        floor = [c for c in fallback if max_loss is None or m.loss[c.model_name] <= max_loss]
        return floor[:1] or fallback[:1]

    def _demoted(self, c: Candidate) -> bool:
        return (
            self._drift is not None
            and c.variant != REFERENCE_VARIANT
            and self._drift.demoted(c.model_name, c.version)
        )

    def _admits(self, m: _Model, c: Candidate) -> bool:
        """Whether the running mean loss stays within the budget with ``c`` serving this request."""
        ewma = m.loss_ewma + (m.loss[c.model_name] - m.loss_ewma) / self.config.budget_window
        return self._mean(ewma, m.routed + 1) <= self.config.accuracy_budget

    def _mean(self, ewma: float, n: int) -> float:
        """The bias-corrected weighted mean: the plain mean over the first requests (no free budget at start),
        the exponentially weighted one over the last ``budget_window`` requests later."""
        return ewma / (1 - (1 - 1 / self.config.budget_window) ** n) if n else 0.0

    def _predictor(self, c: Candidate, now: float, quantile: float | None = None) -> Latency:
        return lambda rows: self.latency.predict_s(c.model_name, rows, now, quantile)

    def _step_up(
        self, m: _Model, logical: str, within: list[Candidate], ci: int, budget_s: float, now: float
    ) -> int:
        cfg = self.config
        if ci == 0:
            m.headroom_since_s = None
            return 0
        upper = within[ci - 1]
        rate = sum(rows for _, rows in m.arrivals) / cfg.rate_window_s
        tail, typical = self._predictor(upper, now), self._predictor(upper, now, 0.5)
        room = capacity(Shape.of(upper.config), tail, budget_s, typical) * (1 - cfg.headroom)
        if rate > room:
            m.headroom_since_s = None
            return ci
        if m.headroom_since_s is None:
            m.headroom_since_s = now
        if now - m.headroom_since_s >= cfg.step_up_after_s and now - m.switched_s >= cfg.min_dwell_s:
            self._switch(m, logical, within[ci].model_name, upper.model_name, "up", now)
            return ci - 1
        return ci

    def _switch(self, m: _Model, logical: str, old: str, new: str, direction: str, now: float) -> None:
        m.ceiling, m.switched_s, m.headroom_since_s = new, now, None
        self._observer.switch(logical, old, new, direction)

    def _refuse(
        self,
        logical: str,
        slo_s: float,
        margin_s: float,
        client_deadline_s: float | None,
        now: float,
        overhead: float,
        plans: dict[str, Plan],
    ) -> None:
        """Nothing is feasible with the safety margin: reject early where the configuration (or the client's
        deadline) says so. Refusals ignore the margin: only a request predicted late outright is refused."""
        alone = min(p.alone_s for p in plans.values()) + overhead
        if client_deadline_s is not None and now + alone > client_deadline_s:
            self._observer.rejection(logical, "deadline")
            raise DeadlineExceeded(
                f"model {logical!r} cannot answer within the client's deadline: the fastest variant "
                f"needs {alone * 1000:.1f} ms, {max(0.0, client_deadline_s - now) * 1000:.1f} ms are left"
            )
        action = self.config.infeasible
        late_everywhere = all(p.finish_s + overhead > p.deadline_s for p in plans.values())
        if (action is Infeasible.SHED and late_everywhere) or (action is Infeasible.REJECT and alone > slo_s):
            self._observer.rejection(logical, "overloaded")
            late = min(p.finish_s - now for p in plans.values()) + overhead
            raise Overloaded(
                f"model {logical!r} cannot meet the request's SLO of {slo_s * 1000:g} ms on any variant: "
                f"the earliest predicted answer is in {late * 1000:.1f} ms (margin {margin_s * 1000:.1f} ms)"
            )

    def _pick(
        self,
        m: _Model,
        logical: str,
        chosen: Candidate,
        reason: Reason,
        context: PolicyContext,
        predicted_s: float | None,
    ) -> Candidate:
        now = context.now_s
        m.loss_ewma += (m.loss[chosen.model_name] - m.loss_ewma) / self.config.budget_window
        m.routed += 1
        self._observer.selection(logical, chosen.model_name, reason.value)
        if predicted_s is not None and context.seq:
            self._pending[context.seq] = (logical, chosen.model_name, predicted_s)
            if len(self._pending) > 100_000:  # events of requests that never finished
                self._pending.pop(next(iter(self._pending)))
        m.mix.append((now, chosen.model_name))
        while m.mix and now - m.mix[0][0] > self.config.mix_window_s:
            m.mix.popleft()
        if now - m.mix_reported_s >= 0.5:
            m.mix_reported_s = now
            shares = {name: 0.0 for name in m.order}
            for _, name in m.mix:
                shares[name] = shares.get(name, 0.0) + 1 / len(m.mix)
            self._observer.mix(logical, shares, self._mean(m.loss_ewma, m.routed))
        return chosen


__all__ = ["Infeasible", "Reason", "SloConfig", "SloPolicy"]
