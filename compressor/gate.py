"""The accuracy gate: each candidate of a ladder scored against the reference, the first that passes kept,
every attempt recorded (the card and the build report carry them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compressor import evaluate
from compressor.passes.base import PassResult
from compressor.source import Source

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Gated:
    """A candidate that passed (or the reference), its score and every attempt before and at it."""

    result: PassResult
    score: evaluate.Score
    attempts: list[dict[str, Any]] = field(default_factory=list)


class GateFailed(Exception):
    """No candidate of the ladder passed the gate."""

    def __init__(self, attempts: list[dict[str, Any]]) -> None:
        super().__init__(f"failed the accuracy gate on {len(attempts)} candidates")
        self.attempts = attempts


class Judge:
    """Scores candidates on the source's held-out batches against the reference's outputs."""

    def __init__(self, source: Source, log: Log) -> None:
        self.source, self.log = source, log
        self._outputs: np.ndarray | None = None
        self.reference_value = 0.0

    def score(self, outputs: np.ndarray) -> evaluate.Score:
        if self.source.task == "classification":
            assert self.source.eval_labels is not None
            return evaluate.top1(outputs, self.source.eval_labels)
        assert self._outputs is not None, "the reference is judged first"
        return evaluate.fidelity(outputs, self._outputs)

    def reference(self, made: PassResult) -> Gated:
        """Take ``made`` as the reference: every later candidate is judged against its outputs."""
        self._outputs = evaluate.run_batches(made.path, self.source.eval_batches)
        score = self.score(self._outputs)
        self.reference_value = score.value
        return Gated(made, score)

    def gate(self, variant: str, limit: float, candidates: Iterator[PassResult]) -> Gated:
        """The first candidate whose relative loss is at most ``limit``; GateFailed when none is."""
        attempts: list[dict[str, Any]] = []
        for made in candidates:
            settings = made.settings
            try:
                score = self.score(evaluate.run_batches(made.path, self.source.eval_batches))
            except Exception as e:  # noqa: BLE001 - a candidate that fails to load or run fails its rung
                attempts.append(
                    {"settings": settings, "passed": False, "error": f"{type(e).__name__}: {e}"[:500]}
                )
                self.log(f"  {variant}: candidate failed to run: {e}")
                continue
            loss = evaluate.relative_loss(score.value, self.reference_value)
            ok = loss <= limit
            attempts.append(
                {
                    "settings": settings,
                    score.metric: score.value,
                    "relative_loss": loss,
                    "passed": ok,
                    **score.extra,
                }
            )
            self.log(
                f"  {variant}: {score.metric}={score.value:.4f} loss={loss:.2%} (limit {limit:.0%}) "
                f"{'pass' if ok else 'fail'}"
            )
            if ok:
                return Gated(made, score, attempts)
        raise GateFailed(attempts)
