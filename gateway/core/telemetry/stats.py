"""Triton's per-model statistics, accumulated from what the service and the batchers report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.core.api import BatchStat, DurationStat, ModelStatistics
from gateway.core.batching.queue import BatchResult
from gateway.core.telemetry.observer import BatchEvent, Observer, RequestEvent


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


class Statistics:
    def __init__(self) -> None:
        self._models: dict[tuple[str, str], _Model] = {}

    def _model(self, model: str, version: str) -> _Model:
        return self._models.setdefault((model, version), _Model())

    def request_done(self, event: RequestEvent, result: BatchResult | None) -> None:
        m = self._model(event.model, event.version)
        request_ns = int(event.request_s * 1e9)
        if result is None:
            m.fail.add(request_ns)
            return
        m.last_inference_ms = time.time_ns() // 1_000_000  # Triton reports wall-clock ms since the epoch
        m.success.add(request_ns)
        m.queue.add(result.queue_ns)
        m.compute_input.add(result.compute_input_ns)
        m.compute_infer.add(result.compute_infer_ns)
        m.compute_output.add(result.compute_output_ns)

    def batch_executed(self, model: str, version: str, rows: int, compute_ns: int) -> None:
        m = self._model(model, version)
        m.execution_count += 1
        m.inference_count += rows
        m.batches.setdefault(rows, _Duration()).add(compute_ns)

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


class StatsObserver:
    """The observer the batchers report to: feeds the statistics, then forwards to ``observer``."""

    def __init__(self, stats: Statistics, observer: Observer) -> None:
        self._stats, self._observer = stats, observer

    def request_done(self, event: RequestEvent) -> None:
        self._observer.request_done(event)

    def batch_done(self, event: BatchEvent) -> None:
        if event.ok:
            self._stats.batch_executed(event.model, event.version, event.rows, int(event.compute_s * 1e9))
        self._observer.batch_done(event)

    def queue_changed(self, logical_model: str, model: str, version: str, queued: int, inflight: int) -> None:
        self._observer.queue_changed(logical_model, model, version, queued, inflight)

    def model_state(self, model: str, version: str, ready: bool) -> None:
        self._observer.model_state(model, version, ready)
