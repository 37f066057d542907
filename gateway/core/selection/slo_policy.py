"""The SLO- and load-aware policy: per request, the most accurate variant that meets its SLO under the
current load, inside an accuracy budget, without flapping.

- **Eligible variants**: READY, gate passed, not demoted by the drift monitor, not dominated (another
  variant is at least as accurate and at least as fast at every profiled batch size, e.g. fp16 on a CPU;
  left out and reported), and within the request's ``max_accuracy_loss``. Ordered by accuracy.
- **Feasible**: the variant's queue, run in the batches its batcher would form at the latencies the
  ``LatencyModel`` predicts, ends the request's batch by its deadline minus a safety margin (a fraction of
  the SLO plus a fixed part), counting the gateway's own measured overhead. The batches are those of
  ``gateway.core.batching.formation``, the function the batcher itself forms them with.
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

Times inside are ``time.monotonic_ns()``, durations nanoseconds; ``SloConfig`` (settings) is in seconds and
milliseconds, the observer's predictions in seconds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.core.batching.formation import Rules, capacity
from gateway.core.drift.monitor import DriftMonitor
from gateway.core.errors import DeadlineExceeded, ModelNotReady, Overloaded
from gateway.core.selection.events import NullPolicyObserver, PolicyObserver
from gateway.core.selection.feasibility import Feasibility, first_feasible, predictor
from gateway.core.selection.latency_model import NEVER, LatencyModel, Window
from gateway.core.selection.ledger import Ledger
from gateway.core.selection.policy import Candidate, PolicyContext
from gateway.core.selection.slo import Infeasible, Reason, SloConfig
from gateway.core.selection.variants import demoted, eligible_order, loss_of, ranked
from gateway.core.telemetry.observer import BatchEvent, Outcome, RequestEvent

log = logging.getLogger(__name__)
S = 1_000_000_000  # nanoseconds per second


@dataclass(slots=True)
class _Model:
    key: frozenset[tuple[str, str, bool]]  # (model, version, demoted) the order was built for
    order: list[str]  # eligible variants, most accurate first
    loss: dict[str, float]
    ceiling: str
    overhead: Window  # the gateway's own time per request (ns): request - queue - compute
    ledger: Ledger  # the routed requests' running mean loss and mix
    switched_ns: int = NEVER
    headroom_since_ns: int | None = None
    arrivals: deque[tuple[int, int]] = field(default_factory=deque)  # (ns, rows)


class SloPolicy:
    def __init__(
        self,
        config: SloConfig | None = None,
        *,
        latency: LatencyModel | None = None,
        drift: DriftMonitor | None = None,
        observer: PolicyObserver | None = None,
    ) -> None:
        self.config = cfg = config or SloConfig()
        self.latency = latency or LatencyModel()
        self._drift = drift
        self._observer = observer or NullPolicyObserver()
        self._step_up_ns, self._dwell_ns = round(cfg.step_up_after_s * S), round(cfg.min_dwell_s * S)
        self._rate_window_ns = round(cfg.rate_window_s * S)
        self._models: dict[str, _Model] = {}
        self._known: set[str] = set()  # variants whose card the latency model has
        self._pending: dict[int, tuple[str, str, int]] = {}  # seq -> (logical, model, predicted_ns)
        self._reported: dict[tuple[str, str], str] = {}  # (logical, dominated model) -> by

    # -- Policy -----------------------------------------------------------------------------------------

    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        if not candidates:
            raise ModelNotReady(f"no variant of model {logical_model!r} is ready")
        terms, now = context.terms, context.now_ns
        m = self._model(logical_model, candidates)
        m.arrivals.append((now, context.rows))
        while now - m.arrivals[0][0] > self._rate_window_ns:
            m.arrivals.popleft()
        if terms.client_deadline_ns is not None and now >= terms.client_deadline_ns:
            self._observer.rejection(logical_model, "deadline")
            raise DeadlineExceeded(f"request for model {logical_model!r} arrived after the client's deadline")
        usable = self._usable(m, candidates, terms.max_loss)
        if terms.slo_ns is None:
            return self._pick(m, logical_model, usable[0], Reason.NO_SLO, context, None)
        overhead = round(m.overhead.quantile(0.95)) if len(m.overhead) else 0
        f = Feasibility(self.latency, self.config, context, overhead)
        within = [c for c in usable if m.loss[c.model_name] <= self.config.accuracy_budget] or usable
        names = [c.model_name for c in within]
        aggressive = [c for c in usable if c.model_name not in names and self._admits(m, c)]
        ci = names.index(m.ceiling) if m.ceiling in names else 0
        ci = self._step_up(m, logical_model, within, ci, terms.slo_ns - f.margin_ns - overhead, now)
        chosen, reason = first_feasible(f, within, ci, aggressive)
        if chosen is None:  # late everywhere: the earliest answer (instances of other variants may be idle)
            chosen = min(within + aggressive, key=lambda c: f.plan(c).finish_ns)
            self._refuse(logical_model, f)
        index = names.index(chosen.model_name) if chosen.model_name in names else len(names) - 1
        if index > ci:
            self._switch(m, logical_model, names[ci], names[index], "down", now)
        predicted_ns = f.plan(chosen).finish_ns - now + overhead
        return self._pick(m, logical_model, chosen, reason, context, predicted_ns)

    def observe(self, event: RequestEvent) -> None:
        pending = self._pending.pop(event.seq, None) if event.seq else None
        if event.outcome is not Outcome.SUCCESS:
            return
        if pending is not None:
            self._observer.prediction(pending[0], pending[1], pending[2] / S, event.request_s)
        m = self._models.get(event.logical_model)
        if m is not None:
            own_s = max(0.0, event.request_s - event.queue_s - event.compute_s)
            m.overhead.add(time.monotonic_ns(), own_s * S)

    def observe_batch(self, event: BatchEvent) -> None:
        if event.ok and event.model in self._known:
            self.latency.record(event.model, event.rows, round(event.compute_s * S), time.monotonic_ns())

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
        order, beaten = eligible_order([c for c in candidates if not self._demoted(c)], None)
        self._report_dominated(logical, beaten)
        ceiling = m.ceiling if m is not None and m.ceiling in order else (order[0] if order else "")
        loss = {c.model_name: loss_of(c) for c in candidates}
        ledger = m.ledger if m is not None else Ledger(self.config.budget_window, self.config.mix_window_s)
        fresh = _Model(key, order, loss, ceiling, Window(256, 15 * S), ledger)
        if m is not None:
            fresh.switched_ns, fresh.arrivals, fresh.overhead = m.switched_ns, m.arrivals, m.overhead
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
        return demoted(self._drift, c)

    def _admits(self, m: _Model, c: Candidate) -> bool:
        """Whether the running mean loss stays within the budget with ``c`` serving this request."""
        return m.ledger.admits(m.loss[c.model_name], self.config.accuracy_budget)

    def _step_up(
        self, m: _Model, logical: str, within: list[Candidate], ci: int, budget_ns: int, now_ns: int
    ) -> int:
        if ci == 0:
            m.headroom_since_ns = None
            return 0
        upper = within[ci - 1]
        rate = sum(rows for _, rows in m.arrivals) / self.config.rate_window_s  # rows per second
        tail, typical = predictor(self.latency, upper, now_ns), predictor(self.latency, upper, now_ns, 0.5)
        room = capacity(Rules.of(upper.config), tail, budget_ns, typical) * (1 - self.config.headroom)
        if rate > room:
            m.headroom_since_ns = None
            return ci
        if m.headroom_since_ns is None:
            m.headroom_since_ns = now_ns
        if now_ns - m.headroom_since_ns >= self._step_up_ns and now_ns - m.switched_ns >= self._dwell_ns:
            self._switch(m, logical, within[ci].model_name, upper.model_name, "up", now_ns)
            return ci - 1
        return ci

    def _switch(self, m: _Model, logical: str, old: str, new: str, direction: str, now_ns: int) -> None:
        m.ceiling, m.switched_ns, m.headroom_since_ns = new, now_ns, None
        self._observer.switch(logical, old, new, direction)

    def _refuse(self, logical: str, f: Feasibility) -> None:
        """Nothing is feasible with the safety margin: reject early where the configuration (or the client's
        deadline) says so. Refusals ignore the margin: only a request predicted late outright is refused."""
        plans, now, overhead, client = f.plans.values(), f.now_ns, f.overhead_ns, f.client_deadline_ns
        alone = min(p.alone_ns for p in plans) + overhead
        if client is not None and now + alone > client:
            self._observer.rejection(logical, "deadline")
            raise DeadlineExceeded(
                f"model {logical!r} cannot answer within the client's deadline: the fastest variant "
                f"needs {alone / 1e6:.1f} ms, {max(0, client - now) / 1e6:.1f} ms are left"
            )
        action = self.config.infeasible
        late_everywhere = all(p.finish_ns + overhead > p.deadline_ns for p in plans)
        if (action is Infeasible.SHED and late_everywhere) or (
            action is Infeasible.REJECT and alone > f.slo_ns
        ):
            self._observer.rejection(logical, "overloaded")
            late = min(p.finish_ns - now for p in plans) + overhead
            raise Overloaded(
                f"model {logical!r} cannot meet the request's SLO of {f.slo_ns / 1e6:g} ms on any variant: "
                f"the earliest predicted answer is in {late / 1e6:.1f} ms (margin {f.margin_ns / 1e6:.1f} ms)"
            )

    def _pick(
        self,
        m: _Model,
        logical: str,
        chosen: Candidate,
        reason: Reason,
        context: PolicyContext,
        predicted_ns: int | None,
    ) -> Candidate:
        now = context.now_ns
        m.ledger.add(chosen.model_name, m.loss[chosen.model_name], now)
        self._observer.selection(logical, chosen.model_name, reason.value)
        if predicted_ns is not None and context.seq:
            self._pending[context.seq] = (logical, chosen.model_name, predicted_ns)
            if len(self._pending) > 100_000:  # events of requests that never finished
                self._pending.pop(next(iter(self._pending)))
        m.ledger.report(logical, self._observer, now, m.order)
        return chosen


__all__ = ["Infeasible", "Reason", "SloConfig", "SloPolicy"]
