"""Shadow comparisons: the same inputs through a second variant, with spare capacity only, off the client's
path.

After a request succeeds, with probability ``shadow_fraction``: a request a compressed variant served is run
again on the fp32 reference; a request the reference served is run on the compressed variant with the
fewest recent samples (a probe: so a variant is watched, and a demoted one can recover, while the policy
does not send it traffic). Only when nothing waits in any queue of the logical model, the second variant
runs nothing, and no other shadow of the model is running; the shadow goes through the variant's batcher,
so it counts as load the policy sees. The client's answer is already final; the comparison feeds the
``DriftMonitor``. Requests with an ``id`` served by a classifier are remembered for ground-truth labels.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping

import numpy as np

from gateway.core.batching.queue import BatchResult
from gateway.core.drift.monitor import DriftMonitor, agreement, is_classifier
from gateway.core.errors import GatewayError
from gateway.core.models.registry import ModelRecord, Registry, VersionState
from gateway.core.selection.events import PolicyObserver
from varigate.contract.variants import REFERENCE_VARIANT

log = logging.getLogger(__name__)

Target = tuple[ModelRecord, VersionState]


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
        self._rng = random.Random(seed)
        self._active: set[str] = set()  # logical models with a shadow running
        self._tasks: set[asyncio.Task[None]] = set()

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
        if request_id and is_classifier(record.spec.card) and output in result.outputs:
            top1 = np.argmax(np.asarray(result.outputs[output]).reshape(len(result.outputs[output]), -1), 1)
            self.monitor.remember(logical, record.name, request_id, top1.tolist())
        fraction = self.monitor.config.shadow_fraction
        if fraction <= 0 or self._rng.random() >= fraction:
            return
        target = self._target(logical, served)
        if target is None:
            self._observer.shadow(logical, record.name, "busy", None)
            return
        self._active.add(logical)
        task = asyncio.get_running_loop().create_task(
            self._compare(logical, served, target, feeds, result.outputs.get(output), output)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _target(self, logical: str, served: Target) -> Target | None:
        """The variant to compare with, or None when there is no spare capacity (or no reference)."""
        if logical in self._active:
            return None
        ready: list[Target] = []
        for r in self._registry.variants(logical):
            if r.ready:
                ready.append((r, r.ready[-1]))
        if any(v.batcher is None or v.batcher.queued for _, v in ready):
            return None
        reference = [t for t in ready if t[0].variant == REFERENCE_VARIANT]
        if not reference:
            return None
        if served[0].variant != REFERENCE_VARIANT:
            target = reference[0]
        else:
            probes = [t for t in ready if t[0].variant != REFERENCE_VARIANT and t[0].spec is not None]
            if not probes:
                return None
            target = min(
                probes, key=lambda t: (self.monitor.samples(logical, t[0].name, str(t[1].version)), t[0].name)
            )
        batcher = target[1].batcher
        return target if batcher is not None and batcher.inflight == 0 else None

    async def _compare(
        self,
        logical: str,
        served: Target,
        target: Target,
        feeds: Mapping[str, np.ndarray],
        served_output: np.ndarray | None,
        output: str,
    ) -> None:
        """Run ``feeds`` on ``target`` and record how the non-reference one of the pair agrees."""
        probe = target[0].variant != REFERENCE_VARIANT  # the reference served; the target is watched
        record, version = target if probe else served
        try:
            if served_output is None or target[1].batcher is None or record.spec is None:
                raise ValueError(f"nothing to compare: output {output!r} missing")
            other = (await target[1].batcher.submit(feeds)).outputs[output]
            pair = (other, served_output) if probe else (served_output, other)
            rows = agreement(is_classifier(record.spec.card), *pair)
        except (GatewayError, KeyError, ValueError) as e:
            log.info("shadow comparison of %s with %s failed: %s", served[0].name, target[0].name, e)
            self._observer.shadow(logical, record.name, "failed", None)
            return
        finally:
            self._active.discard(logical)
        self._observer.shadow(logical, record.name, "compared", sum(rows) / len(rows))
        self.monitor.record(logical, record.name, str(version.version), record.spec.card, rows)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
