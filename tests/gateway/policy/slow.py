"""A real backend whose variants take as long as their config says: onnxruntime computes every batch,
then the runner sleeps out the rest of ``varigate.test_delay_ms`` (``"<per batch>,<per row>"``).

Sleeping costs no CPU, so a "slow fp32, fast int8" repository behaves the same on 2 busy cores as on an idle
machine: the policy tests measure the policy, not the neighbours. Loaded by name like any backend:
``varigate serve --backend tests.gateway.policy.slow:SlowBackend``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gateway.backends.base import Runner
from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.core.config import ModelConfig

DELAY_PARAMETER = "varigate.test_delay_ms"


class SlowRunner:
    def __init__(self, runner: Runner, base_s: float, per_row_s: float) -> None:
        self._runner, self._base_s, self._per_row_s = runner, base_s, per_row_s

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.monotonic()
        outputs = self._runner.run(feeds)
        rows = len(next(iter(feeds.values()))) if feeds else 1
        time.sleep(max(0.0, t0 + self._base_s + self._per_row_s * rows - time.monotonic()))
        return outputs

    def warmup(self) -> None:
        self._runner.warmup()

    def close(self) -> None:
        self._runner.close()


class SlowBackend(OnnxRuntimeBackend):
    def __init__(self, workers: int = 6) -> None:
        # sleeping workers use no CPU: by default enough of them that every variant's batch runs at once
        super().__init__(intra_op_threads=1, executor_workers=workers, cores=workers, allow_spinning=False)

    def load(self, model_dir: Path, config: ModelConfig) -> SlowRunner:
        base_ms, _, row_ms = config.parameters.get(DELAY_PARAMETER, "0,0").partition(",")
        return SlowRunner(super().load(model_dir, config), float(base_ms) / 1e3, float(row_ms or 0) / 1e3)


class PairBackend(SlowBackend):
    """A compute pool of two slots, as on this project's 2-core machines: every variant shares them."""

    def __init__(self) -> None:
        super().__init__(workers=2)
