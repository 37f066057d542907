"""A real backend for tests that need to hold a batch: onnxruntime behind a gate.

``GatedBackend(gate=threading.Event())`` runs every batch on onnxruntime, but only once ``gate`` is set, so
a test decides when the executing batch finishes and what queues meanwhile. Loaded by name, like any
backend: ``create_service(repo, backend="tests.gateway.gated:GatedBackend", backend_options={...})``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gateway.backends.base import Runner
from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.core.config import ModelConfig

GATE_TIMEOUT_S = 30.0


class GatedRunner:
    def __init__(self, runner: Runner, gate: threading.Event, started: threading.Semaphore) -> None:
        self._runner, self._gate, self._started = runner, gate, started

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._started.release()
        if not self._gate.wait(GATE_TIMEOUT_S):
            raise TimeoutError("test gate was never opened")
        return self._runner.run(feeds)

    def warmup(self) -> None:
        self._runner.warmup()

    def close(self) -> None:
        self._runner.close()


class GatedBackend(OnnxRuntimeBackend):
    def __init__(self, *, gate: threading.Event, started: threading.Semaphore | None = None) -> None:
        super().__init__(intra_op_threads=1, executor_workers=2, cores=2, allow_spinning=False)
        self.gate = gate
        self.started = started or threading.Semaphore(0)

    def load(self, model_dir: Path, config: ModelConfig) -> GatedRunner:
        return GatedRunner(super().load(model_dir, config), self.gate, self.started)
