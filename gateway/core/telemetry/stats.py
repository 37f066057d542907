"""Triton's per-model statistics, accumulated from the events the data plane and the batchers report (a
listener on the core's ``Fanout``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.core.api import BatchStat, DurationStat, ModelStatistics
from gateway.core.telemetry.observer import BatchEvent, NullObserver, Outcome, RequestEvent


@dataclass(slots=True)
class _Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += max(0, ns)

    def frozen(self) -> DurationStat:
        return DurationStat(self.count, self.ns)


@dataclass(slots=True)
class _Model:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: _Duration = field(default_factory=_Duration)
    fail: _Duration = field(default_factory=_Duration)
    queue: _Duration = field(default_factory=_Duration)
    compute_input: _Duration = field(default_factory=_Duration)
    compute_infer: _Duration = field(default_factory=_Duration)
    compute_output: _Duration = field(default_factory=_Duration)
    batches: dict[int, _Duration] = field(default_factory=dict)


class Statistics(NullObserver):
    def __init__(self) -> None:
        self._models: dict[tuple[str, str], _Model] = {}

    def _model(self, model: str, version: str) -> _Model:
        return self._models.setdefault((model, version), _Model())

    def request_done(self, event: RequestEvent) -> None:
        m = self._model(event.model, event.version)
        request_ns = int(event.request_s * 1e9)
        result = event.result
        if result is None or event.outcome is not Outcome.SUCCESS:
            m.fail.add(request_ns)
            return
        m.last_inference_ms = time.time_ns() // 1_000_000  # Triton reports wall-clock ms since the epoch
        m.success.add(request_ns)
        m.queue.add(result.queue_ns)
        m.compute_input.add(result.compute_input_ns)
        m.compute_infer.add(result.compute_infer_ns)
        m.compute_output.add(result.compute_output_ns)

    def batch_done(self, event: BatchEvent) -> None:
        if not event.ok:
            return
        m = self._model(event.model, event.version)
        m.execution_count += 1
        m.inference_count += event.rows
        m.batches.setdefault(event.rows, _Duration()).add(int(event.compute_s * 1e9))

    def snapshot(self, model: str, version: str) -> ModelStatistics:
        m = self._models.get((model, version), _Model())
        return ModelStatistics(
            name=model,
            version=version,
            last_inference_ms=m.last_inference_ms,
            inference_count=m.inference_count,
            execution_count=m.execution_count,
            success=m.success.frozen(),
            fail=m.fail.frozen(),
            queue=m.queue.frozen(),
            compute_input=m.compute_input.frozen(),
            compute_infer=m.compute_infer.frozen(),
            compute_output=m.compute_output.frozen(),
            batch_stats=tuple(BatchStat(size, d.frozen()) for size, d in sorted(m.batches.items())),
        )
