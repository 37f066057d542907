"""Late binding, the default policy: the variant is chosen per batch, when the compute pool can run one
(DESIGN.md, "Late binding").

Requests to a logical model wait in one queue (``RequestQueue``: Triton's priority levels and queue
policies; inside a level, earliest SLO deadline first, requests without an SLO behind those with one).
Whenever the queue is not empty and the pool (``batching.pool``) has a free slot, the scheduler forms the
next batch and binds it to a variant (``choice.choose``: the most accurate variant that lets every request
in it, and those waiting behind it, meet their deadlines, inside the accuracy budget), then hands it to
that variant's batcher to run at once on the grant (``Batcher.dispatch``). Work-conserving: an idle pool
runs what is queued at once, so nothing waits for a batch to fill while a core is free; batches grow by
themselves while the cores are busy. When nothing is in time, ``--slo-infeasible`` decides: ``serve`` the
earliest answer late, ``reject`` also refuses at arrival a request the fastest variant could not answer in
time on an idle pool, ``shed`` answers the requests of the batch that would be late on the fastest even
at its typical (p50) time with ``Overloaded``. Pinned requests (a variant named) never come here: they
keep Triton's batcher, on the same pool.

Variants are read at every decision (a reload takes effect at the next batch); demoted variants (drift) and
dominated ones are left out; the budget is the running mean of the card losses of the requests served
(exponentially weighted over ``budget_window``). The latency model learns from every batch that runs, per
pool mode (``latency_model``); each batch's predicted against measured time is reported.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from gateway.core.batching.padding import length, signature
from gateway.core.batching.pool import FIXED, WIDE, ComputePool
from gateway.core.batching.queue import QueuedRequest, RequestQueue
from gateway.core.drift.monitor import DriftMonitor
from gateway.core.errors import GatewayError, ModelNotReady, Unavailable
from gateway.core.models.runner import placement_of, remote_ready
from gateway.core.selection.choice import Choice, Option, Pool, choose, deadline_order, pool_view, urgency
from gateway.core.selection.choice_plan import expected
from gateway.core.selection.events import NullPolicyObserver, PolicyObserver
from gateway.core.selection.late_state import ARRIVALS_KEPT, Bound, Logical, Variants, know, options_for
from gateway.core.selection.latency_model import LatencyModel, Window
from gateway.core.selection.ledger import Ledger
from gateway.core.selection.policy import Candidate, MostAccuratePolicy, PolicyContext
from gateway.core.selection.refusal import expire, refuse_early, shed
from gateway.core.selection.slo import Infeasible, SloConfig, SloTerms
from gateway.core.telemetry.observer import BatchEvent, NullObserver, Observer, Outcome, RequestEvent

S = 1_000_000_000
RATE_WINDOW_NS = S // 2  # the arrival rate the choice expects next: that of the last half second


class LateBinding:
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
        self.pool = ComputePool(64)  # the service attaches its own (``attach``)
        self._drift, self._observer = drift, observer or NullPolicyObserver()
        self._models: dict[str, Logical] = {}
        self._overhead = Window(256, 15 * S)  # the gateway's own time per request (ns)
        self._pumping = False
        self._removed = asyncio.Event()  # a queued request left its queue (``drain`` waits on it)
        self._stop_listening: Callable[[], None] = lambda: None
        self._events: Observer = NullObserver()

    def attach(self, pool: ComputePool, events: Observer | None = None) -> None:
        """Schedule on ``pool``; report each logical model's queue to ``events`` (as a model of its own:
        Triton's pending-request gauge of ``minilm`` counts the requests waiting to be bound)."""
        self._stop_listening()
        self.pool = pool
        self._stop_listening = pool.listen(self._wake)
        self._events = events or NullObserver()

    # -- the data plane's entry ------------------------------------------------------------------------

    def submit(
        self,
        logical: str,
        variants: Variants,
        feeds: Mapping[str, np.ndarray],
        terms: SloTerms,
        *,
        priority: int = 0,
        timeout_us: int = 0,
        now_ns: int,
        expires_ns: int = 0,
    ) -> QueuedRequest:
        """Queue a validated request; its future resolves with its result, ``served`` names its variant."""
        bound = variants()
        if not bound:
            raise ModelNotReady(f"no variant of model {logical!r} is ready")
        config = bound[0][0].config
        m = self._models.get(logical)
        if m is None:
            queue = RequestQueue(logical, config.dynamic_batching, self._wake)
            ledger = Ledger(self.config.budget_window, self.config.mix_window_s)
            m = self._models[logical] = Logical(queue, variants, ledger)
        m.variants = variants
        rows = next(iter(feeds.values())).shape[0] if config.max_batch_size > 0 and feeds else 1
        deadline = now_ns + terms.slo_ns if terms.slo_ns is not None else 0
        if terms.slo_ns is not None or terms.client_deadline_ns is not None:
            know(self.latency, m, bound)
            mode = WIDE if self.pool.adaptive else FIXED  # alone on an idle pool
            alone = min(self.latency.predict_ns(c.model_name, rows, now_ns, None, mode) for c, _, _ in bound)
            refuse_early(logical, alone + self._overhead_ns(), terms, now_ns, self.config, self._observer)
        item = m.queue.push(feeds, rows, signature(config, feeds), priority, timeout_us, deadline)
        item.max_loss = math.inf if terms.max_loss is None else terms.max_loss
        item.length = length(config, feeds)
        m.arrivals.append(now_ns)
        m.latest = item
        item.future.add_done_callback(lambda _f: self._gone(logical, m, item))
        m.inflight += 1
        self._report(logical, m)
        if expires_ns:
            left_s = max(0.0, (expires_ns - time.monotonic_ns()) / 1e9)
            timer = asyncio.get_running_loop().call_later(left_s, expire, item, logical)
            item.future.add_done_callback(lambda _f: timer.cancel())
        self._wake()
        return item

    def _gone(self, logical: str, m: Logical, item: QueuedRequest) -> None:
        m.queue.remove(item)
        m.inflight -= 1
        self._report(logical, m)
        self._removed.set()
        self._wake()

    def _report(self, logical: str, m: Logical) -> None:
        self._events.queue_changed(logical, logical, "", len(m.queue), m.inflight)

    async def drain(self) -> None:
        """Return when nothing waits in any queue (the batchers then finish what was dispatched)."""
        while any(len(m.queue) for m in self._models.values()):
            self._removed.clear()
            await self._removed.wait()

    def close(self) -> None:
        error = Unavailable("the server was closed while the request was queued")
        for m in self._models.values():
            for item in list(m.queue):
                if not item.future.done():
                    item.future.set_exception(error)
        self._stop_listening()

    # -- scheduling -------------------------------------------------------------------------------------

    def _wake(self) -> None:
        if not self._pumping:
            self._pumping = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """While the pool can take a batch, bind the next one of the logical model whose most urgent
        request is the most urgent of all (earliest deadline first across models too)."""
        self._pumping = False
        stuck: set[str] = set()
        while self.pool.can_take() or self.pool.can_take_remote():
            waiting = [(k, m) for k, m in self._models.items() if len(m.queue) and k not in stuck]
            if not waiting:
                return
            logical, m = min(waiting, key=lambda km: min(urgency(it) for it in km[1].queue))
            if not self._next(logical, m):
                stuck.add(logical)

    def _next(self, logical: str, m: Logical) -> bool:
        """Bind and dispatch one batch; False when nothing could be dispatched now. Local slots first; a
        remote slot takes a batch of the variants placed on the fleet, those placed ``both`` only when the
        queue's head would be late waiting for the next local slot."""
        # answered ones (shed, refused, cancelled) leave the queue in their futures' callbacks, which run
        # after this loop: they are not the queue's any more
        queue = [it for it in deadline_order(m.queue) if not it.future.done()]
        if not queue:
            return False
        try:
            bound = [b for b in m.variants() if b[1].accepting]
            if not bound:
                raise ModelNotReady(f"no variant of model {logical!r} is ready")
            local = [b for b in bound if placement_of(b[1].runner) != "remote"]
            remote = [b for b in bound if remote_ready(b[1].runner)]
            if not local and not remote:
                raise Unavailable(f"no Triton server has a variant of model {logical!r} ready")
        except GatewayError as e:
            for item in queue:
                item.future.set_exception(e)
            return False
        know(self.latency, m, bound)
        now = time.monotonic_ns()
        if local and self.pool.can_take():
            return self._bind(logical, m, queue, local, now, remote=False)
        if not remote or not self.pool.can_take_remote():
            return False
        if local and self._in_time_locally(m, queue, local, now):
            return False
        return self._bind(logical, m, queue, remote, now, remote=True)

    def _in_time_locally(self, m: Logical, queue: list[QueuedRequest], local: list[Bound], now: int) -> bool:
        """Whether the queue's next batch is in time if it waits for the next local slot."""
        view = pool_view(self.pool, now)
        start = view.free_at_ns[0] if view.free_at_ns else now
        options, _ = self._options(m, local)
        choice = self._choose(m, queue, options, view, now, start)
        return choice.variant is not None and not choice.misses and not choice.hopeless

    def _choose(
        self, m: Logical, queue: list[QueuedRequest], options: list[Option], view: Pool, now: int, start: int
    ) -> Choice:
        cfg = self.config
        ahead = expected(m.latest, m.arrivals, now, RATE_WINDOW_NS, ARRIVALS_KEPT)
        return choose(
            queue,
            options,
            view,
            lambda name, rows, mode, n, q: self.latency.predict_ns(name, rows, now, q, mode, n),
            start,
            self._overhead_ns(),
            lambda it: round((it.deadline_ns - it.enqueued_ns) * cfg.margin_fraction + cfg.margin_ms * 1e6),
            ahead,
            cfg.infeasible is Infeasible.SHED,
        )

    def _bind(
        self,
        logical: str,
        m: Logical,
        queue: list[QueuedRequest],
        bound: list[Bound],
        now: int,
        remote: bool,
    ) -> bool:
        options, by_name = self._options(m, bound)
        choice = self._choose(m, queue, options, pool_view(self.pool, now, remote), now, now)
        if choice.hopeless and self.config.infeasible is Infeasible.SHED:
            shed(logical, choice.hopeless, now, self._observer)
            if not choice.items:
                return True
        if choice.variant is None:
            queue[0].future.set_exception(
                ModelNotReady(
                    f"no ready variant of model {logical!r} can take a request of {queue[0].rows} rows"
                )
            )
            return True
        predicted, alone = choice.predicted_ns, choice.mode == WIDE
        grant = self.pool.try_take_remote(predicted) if remote else self.pool.try_take(alone, predicted)
        if grant is None:
            return False
        candidate, batcher, target = by_name[choice.variant.name]
        items = list(choice.items)
        for it in items:
            m.queue.remove(it)
            it.served = target
        batcher.dispatch(items, grant)
        self._report(logical, m)
        self._removed.set()
        self._served(logical, m, candidate.model_name, choice, now)
        return True

    def _options(self, m: Logical, bound: Sequence[Bound]) -> tuple[list[Option], dict[str, Bound]]:
        return options_for(m, bound, self.config, self._drift)

    def _served(self, logical: str, m: Logical, variant: str, choice: Choice, now_ns: int) -> None:
        assert choice.variant is not None
        for _ in choice.items:
            m.ledger.add(variant, choice.variant.loss, now_ns)
            self._observer.selection(logical, variant, choice.reason.value)
        m.ledger.report(logical, self._observer, now_ns, m.order)

    def _overhead_ns(self) -> int:
        self._overhead.prune(time.monotonic_ns())
        return round(self._overhead.quantile(0.95)) if len(self._overhead) else 0

    # -- Policy (events; ``choose`` is for callers that bind per request) -------------------------------

    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        return MostAccuratePolicy().choose(logical_model, candidates, context)

    def observe(self, event: RequestEvent) -> None:
        if event.outcome is Outcome.SUCCESS and event.logical_model in self._models:
            own_s = max(0.0, event.request_s - event.queue_s - event.compute_s)
            self._overhead.add(time.monotonic_ns(), own_s * S)

    def observe_batch(self, event: BatchEvent) -> None:
        if not event.ok or not event.mode:
            return
        measured = round(event.compute_s * S)
        self.latency.record(event.model, event.rows, measured, time.monotonic_ns(), event.mode, event.length)
        if event.predicted_s > 0:
            self._observer.batch_prediction(
                event.logical_model, event.model, event.mode, event.predicted_s, event.compute_s
            )


__all__ = ["Bound", "LateBinding", "Variants"]
