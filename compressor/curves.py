"""Learning curves of the distilled variants: training loss and validation cosine to the teacher per step.

A distilling pass records ``settings["learning_curve"]`` (shape in ``compressor.passes.learning_curve``);
the pipeline puts the passing rung's settings in the card and every rung's settings in
``card.gate.attempts`` (and, for a variant whose whole ladder failed, in the result's attempts). ``plot``
draws one row per variant that has a curve: loss (log scale) left, validation cosine right, one colour per
attempt, one line style per validation set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.pipeline import VariantResult

_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt's curve: its steps, losses and validation scores, and whether it passed its gate."""

    attempt: int
    passed: bool
    step: list[int]
    loss: list[float]
    validation: dict[str, list[float]]

    @property
    def label(self) -> str:
        return f"attempt {self.attempt}" + ("" if self.passed else " (failed)")


def runs(result: VariantResult) -> list[Run]:
    """The learning curves a variant's build recorded, one per attempt, in attempt order."""
    attempts = list(result.card.gate.attempts) if result.card is not None else []
    attempts = attempts or list(result.attempts)
    found: dict[int, Run] = {}
    for entry in attempts:
        run = _run(entry.get("settings"), bool(entry.get("passed")))
        if run is not None:
            found.setdefault(run.attempt, run)
    if result.card is not None:  # a card without attempts (or a curve only in its settings)
        run = _run(result.card.settings, True)
        if run is not None:
            found.setdefault(run.attempt, run)
    return [found[k] for k in sorted(found)]


def plot(results: list[VariantResult], dst: Path) -> Path | None:
    """``dst`` (a PNG) with every variant's learning curves; None, and nothing written, when none has one."""
    rows = [(r, found) for r in results if (found := runs(r))]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.6 * len(rows)), dpi=100, squeeze=False)
    for (result, found), (loss_ax, val_ax) in zip(rows, axes, strict=True):
        for i, run in enumerate(found):
            colour = f"C{i % 10}"
            loss_ax.plot(
                run.step, [v if v > 0 else math.nan for v in run.loss], color=colour, label=run.label
            )
            for j, (name, values) in enumerate(sorted(run.validation.items())):
                val_ax.plot(
                    run.step[: len(values)],
                    values[: len(run.step)],
                    color=colour,
                    linestyle=_STYLES[j % len(_STYLES)],
                    label=f"{run.label}: {name}",
                )
        loss_ax.set_yscale("log")
        loss_ax.set_title(f"{result.model_name}: training loss")
        val_ax.set_title(f"{result.model_name}: validation cosine to the teacher")
        for ax, ylabel in ((loss_ax, "mean loss since the previous point"), (val_ax, "mean cosine")):
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.tight_layout()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst)
    plt.close(fig)
    return dst


def _run(settings: Any, passed: bool) -> Run | None:
    """The curve in one settings dict, or None when it has none (or one of another shape)."""
    if not isinstance(settings, Mapping) or not isinstance(settings.get("learning_curve"), Mapping):
        return None
    curve = settings["learning_curve"]
    step, loss = curve.get("step"), curve.get("loss")
    if not isinstance(step, list) or not isinstance(loss, list) or not step:
        return None
    n = min(len(step), len(loss))
    validation = curve.get("validation")
    validation = validation if isinstance(validation, Mapping) else {}
    sets = {str(k): [float(v) for v in vs] for k, vs in validation.items() if isinstance(vs, list)}
    attempt = curve.get("attempt", settings.get("attempt", 0))
    return Run(int(attempt), passed, [int(s) for s in step[:n]], [float(v) for v in loss[:n]], sets)
