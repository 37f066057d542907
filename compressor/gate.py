"""The accuracy gate: each candidate of a ladder scored against the reference, the first that passes kept,
every attempt recorded (the card and the build report carry them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compressor import evaluate
from compressor.passes.base import PassResult
from compressor.source import Source

Log = Callable[[str], None]
# The figures carried per held-out set (besides the metric itself) when a source has more than one.
PER_SET = ("nn_top1_agreement", "p05_cosine")


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
    """Scores candidates on every held-out set of the source against the reference's outputs on it.

    An embedding candidate is scored on the primary set and on each of ``Source.extra_eval``; it is gated
    on the set with the largest relative loss (the worse mean cosine), and its Score is that set's, with
    ``mean_cosine_<set>``, ``nn_top1_agreement_<set>`` and ``p05_cosine_<set>`` for every set in ``extra``
    when there is more than one. A classifier is scored on the primary set only (where its labels are)."""

    def __init__(self, source: Source, log: Log) -> None:
        self.source, self.log = source, log
        self._outputs: dict[str, np.ndarray] = {}
        self.reference_values: dict[str, float] = {}
        self.reference_value = 0.0  # the primary set's (for fidelity every set's is 1: fp32 against itself)

    def sets(self) -> dict[str, Sequence[evaluate.Feeds]]:
        """The held-out sets a candidate runs on, the primary first."""
        primary = {self.source.eval_set: self.source.eval_batches}
        if self.source.task == "classification":
            return primary
        return {**primary, **self.source.extra_eval}

    def run(self, made: PassResult) -> dict[str, np.ndarray]:
        return {name: evaluate.run_batches(made.path, batches) for name, batches in self.sets().items()}

    def scores(self, outputs: dict[str, np.ndarray]) -> dict[str, evaluate.Score]:
        """One Score per set."""
        if self.source.task == "classification":
            assert self.source.eval_labels is not None
            return {name: evaluate.top1(out, self.source.eval_labels) for name, out in outputs.items()}
        assert self._outputs, "the reference is judged first"
        return {name: evaluate.fidelity(out, self._outputs[name]) for name, out in outputs.items()}

    def score(self, outputs: dict[str, np.ndarray]) -> tuple[str, evaluate.Score, float]:
        """``(gated_on, score, relative_loss)``: the worst set's score, every set's figures in its extra."""
        scores = self.scores(outputs)
        losses = {
            name: evaluate.relative_loss(s.value, self.reference_values.get(name, s.value))
            for name, s in scores.items()
        }
        worst = max(losses, key=lambda name: losses[name])  # the first (primary) on a tie
        chosen = scores[worst]
        if len(scores) == 1:
            return worst, chosen, losses[worst]
        extra = dict(chosen.extra)
        for name, s in scores.items():
            extra[f"{s.metric}_{name}"] = s.value
            extra |= {f"{k}_{name}": s.extra[k] for k in PER_SET if k in s.extra}
        return worst, evaluate.Score(chosen.metric, chosen.value, extra), losses[worst]

    def reference(self, made: PassResult) -> Gated:
        """Take ``made`` as the reference: every later candidate is judged against its outputs."""
        outputs = self.run(made)
        if self.source.task != "classification":
            self._outputs = outputs
        self.reference_values = {name: s.value for name, s in self.scores(outputs).items()}
        _, score, _ = self.score(outputs)
        self.reference_value = self.reference_values[self.source.eval_set]
        return Gated(made, score)

    def gate(self, variant: str, limit: float, candidates: Iterator[PassResult]) -> Gated:
        """The first candidate whose relative loss on its worst set is at most ``limit``; GateFailed when
        none is."""
        attempts: list[dict[str, Any]] = []
        for made in candidates:
            settings = made.settings
            try:
                gated_on, score, loss = self.score(self.run(made))
            except Exception as e:  # noqa: BLE001 - a candidate that fails to load or run fails its rung
                attempts.append(
                    {"settings": settings, "passed": False, "error": f"{type(e).__name__}: {e}"[:500]}
                )
                self.log(f"  {variant}: candidate failed to run: {e}")
                continue
            ok = loss <= limit
            attempts.append(
                {
                    "settings": settings,
                    score.metric: score.value,
                    "relative_loss": loss,
                    "passed": ok,
                    "gated_on": gated_on,
                    **score.extra,
                }
            )
            self.log(
                f"  {variant}: {score.metric}={score.value:.4f} on {gated_on}{self._others(score)} "
                f"loss={loss:.2%} (limit {limit:.0%}) {'pass' if ok else 'fail'}"
            )
            if ok:
                return Gated(made, score, attempts)
        raise GateFailed(attempts)

    def _others(self, score: evaluate.Score) -> str:
        sets = self.sets()
        if len(sets) == 1:
            return ""
        return " (" + ", ".join(f"{n} {score.extra[f'{score.metric}_{n}']:.4f}" for n in sets) + ")"
