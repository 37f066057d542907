"""Shadow comparisons: the same inputs through a second variant, off the client's path, for a fixed fraction
of answered requests under a cost cap.

Every request that succeeds is sampled with probability ``shadow_fraction`` (at any load, not only when
the machine is idle). A request a compressed variant served is run again on the fp32 reference; a request
the reference served is run on the compressed variant with the fewest shadowed requests so far (a probe:
so a variant is watched, and a demoted one can recover, while the policy sends it no traffic). A sampled
request is skipped, and reported ``busy``, when its logical model is over its cost cap (``ShadowBudget``):
``shadow_max_concurrent`` shadows already running, or shadows having used more than ``shadow_max_share`` of
the model's recent compute. A shadow goes through the target version's batcher at its lowest priority
level (where the config has levels), so the policy sees it as load and real requests go first; one the
batcher refuses or cannot finish in ``SHADOW_TIMEOUT_S`` is ``busy`` too. The client's answer is already
final; the comparison feeds the ``DriftMonitor``, one value per request. Requests with an ``id`` served by
a classifier are remembered for ground-truth labels.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gateway.core.batching.queue import BatchResult
from gateway.core.config import DynamicBatching
from gateway.core.drift.monitor import DriftMonitor, agreement, is_classifier
from gateway.core.errors import DeadlineExceeded, GatewayError, Overloaded
from gateway.core.models.registry import ModelRecord, Registry, VersionState
from gateway.core.selection.events import PolicyObserver
from varigate.contract.variants import REFERENCE_VARIANT

log = logging.getLogger(__name__)

Target = tuple[ModelRecord, VersionState]
COST_WINDOW = 1000  # served requests: the compute shares decay by 1 / COST_WINDOW per served request
SHADOW_TIMEOUT_S = 10.0  # a shadow not answered by then is given up (busy)


def compute_ns(result: BatchResult, rows: int) -> float:
    """A request's share of its batch's compute time (its rows out of the batch's)."""
    batch_ns = result.compute_input_ns + result.compute_infer_ns + result.compute_output_ns
    return batch_ns * rows / max(result.batch_rows, rows, 1)


@dataclass(slots=True)
class ShadowBudget:
    """One logical model's cost cap: shadow compute at most ``max_share`` of the model's recent compute
    (served requests' plus shadows', both decayed per served request over ``window``) and at most
    ``max_concurrent`` shadows at once. Judged on measured costs: the share can pass ``max_share`` by the
    shadows still running when the last one was admitted (at most ``max_concurrent``)."""

    max_share: float
    max_concurrent: int
    window: int = COST_WINDOW
    served_ns: float = 0.0
    shadow_ns: float = 0.0
    running: int = 0

    def served(self, cost_ns: float) -> None:
        keep = 1.0 - 1.0 / self.window
        self.served_ns = self.served_ns * keep + cost_ns
        self.shadow_ns *= keep

    @property
    def share(self) -> float:
        total = self.served_ns + self.shadow_ns
        return self.shadow_ns / total if total > 0 else 0.0

    def admits(self) -> bool:
        return self.running < self.max_concurrent and self.share <= self.max_share

    def started(self) -> None:
        self.running += 1

    def finished(self, cost_ns: float) -> None:
        self.running -= 1
        self.shadow_ns += cost_ns


@dataclass(frozen=True, slots=True)
class _Shadow:
    logical: str
    served: Target
    target: Target
    watched: ModelRecord  # the compressed one of the pair
    version: VersionState
    answer: np.ndarray  # the served variant's output
    output: str
    probe: bool  # the reference served, the target is watched


class Shadower:
    def __init__(
        self,
        monitor: DriftMonitor,
        registry: Registry,
        observer: PolicyObserver | None = None,
        seed: int | None = None,
    ) -> None:
        self.monitor = monitor
        self._registry = registry
        self._observer = observer or monitor.observer
        self._rng = random.Random(seed if seed is not None else monitor.config.seed)
        self._budgets: dict[str, ShadowBudget] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def budget(self, logical: str) -> ShadowBudget:
        budget = self._budgets.get(logical)
        if budget is None:
            config = self.monitor.config
            budget = ShadowBudget(config.shadow_max_share, config.shadow_max_concurrent)
            self._budgets[logical] = budget
        return budget

    def after(
        self,
        logical: str,
        served: Target,
        feeds: Mapping[str, np.ndarray],
        result: BatchResult,
        request_id: str = "",
    ) -> None:
        """Called once a request succeeded; never raises, never delays the caller."""
        try:
            self._after(logical, served, feeds, result, request_id)
        except Exception:  # watching must never fail the request it watches
            log.exception("drift monitoring of a %s request failed", served[0].name)

    def _after(
        self,
        logical: str,
        served: Target,
        feeds: Mapping[str, np.ndarray],
        result: BatchResult,
        request_id: str,
    ) -> None:
        record = served[0]
        if record.spec is None or not record.spec.config.outputs:
            return
        output = record.spec.config.outputs[0].name
        answer = result.outputs.get(output)
        rows = len(answer) if answer is not None and answer.ndim else 1
        budget = self.budget(logical)
        budget.served(compute_ns(result, rows))
        if request_id and is_classifier(record.spec.card) and answer is not None:
            top1 = np.argmax(np.asarray(answer).reshape(rows, -1), 1)
            self.monitor.remember(logical, record.name, request_id, top1.tolist())
        fraction = self.monitor.config.shadow_fraction
        if fraction <= 0 or self._rng.random() >= fraction:
            return
        target = self._target(logical, served)
        if target is None or answer is None:
            return  # nothing to compare with
        probe = target[0].variant != REFERENCE_VARIANT  # the reference served; the target is watched
        shadow = _Shadow(logical, served, target, *(target if probe else served), answer, output, probe)
        if not budget.admits():
            self._observer.shadow(logical, shadow.watched.name, "busy", None)
            return
        budget.started()
        self._start(shadow, feeds, budget)

    def _start(self, shadow: _Shadow, feeds: Mapping[str, np.ndarray], budget: ShadowBudget) -> None:
        """Enqueue the shadow now (behind what the target already holds, at its lowest priority level)."""
        record, version = shadow.target
        try:
            if version.batcher is None or record.spec is None:
                raise ValueError(f"{record.name} cannot run a shadow")
            future = version.batcher.submit(
                feeds,
                priority=lowest_priority(record.spec.config.dynamic_batching),
                expires_ns=time.monotonic_ns() + int(SHADOW_TIMEOUT_S * 1e9),
            )
        except (GatewayError, ValueError) as e:
            budget.finished(0.0)
            self._failed(shadow, e)
            return
        task = asyncio.get_running_loop().create_task(self._compare(shadow, future, budget))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _target(self, logical: str, served: Target) -> Target | None:
        """The variant to compare with: the reference, or for the reference's own requests the compressed
        variant watched least; None when there is none."""
        ready = [(r, r.ready[-1]) for r in self._registry.variants(logical) if r.ready]
        if served[0].variant != REFERENCE_VARIANT:
            return next((t for t in ready if t[0].variant == REFERENCE_VARIANT), None)
        probes = [t for t in ready if t[0].variant != REFERENCE_VARIANT and t[0].spec is not None]
        if not probes:
            return None
        return min(
            probes, key=lambda t: (self.monitor.samples(logical, t[0].name, str(t[1].version)), t[0].name)
        )

    async def _compare(
        self, shadow: _Shadow, future: asyncio.Future[BatchResult], budget: ShadowBudget
    ) -> None:
        """Wait for the shadow's result and record how the non-reference one of the pair agrees."""
        cost = 0.0
        try:
            result = await future
            cost = compute_ns(result, len(shadow.answer))
            other = result.outputs[shadow.output]
            pair = (other, shadow.answer) if shadow.probe else (shadow.answer, other)
            card = shadow.watched.spec.card if shadow.watched.spec is not None else None
            rows = agreement(is_classifier(card), *pair)
        except (GatewayError, KeyError, ValueError) as e:
            self._failed(shadow, e)
            return
        finally:
            budget.finished(cost)
        self._observer.shadow(shadow.logical, shadow.watched.name, "compared", sum(rows) / len(rows))
        self.monitor.record(shadow.logical, shadow.watched.name, str(shadow.version.version), card, rows)

    def _failed(self, shadow: _Shadow, e: Exception) -> None:
        """Refused or given up by the target's batcher: ``busy``; anything else: ``failed``."""
        outcome = "busy" if isinstance(e, Overloaded | DeadlineExceeded) else "failed"
        served, target = shadow.served[0].name, shadow.target[0].name
        log.info("shadow comparison of %s with %s %s: %s", served, target, outcome, e)
        self._observer.shadow(shadow.logical, shadow.watched.name, outcome, None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def lowest_priority(batching: DynamicBatching | None) -> int:
    """The lowest priority level of a config's dynamic batching (``priority_levels``), or 0 without levels."""
    return batching.priority_levels if batching is not None else 0
