"""A distillation's learning curve, in the shape the variant card's settings carry it::

    settings["learning_curve"] = {"step": [int, ...], "loss": [float, ...],
                                  "validation": {"<set>": [float, ...], ...}, "attempt": int}

``loss[i]`` is the mean training loss over the steps since point ``i - 1``; ``validation[set][i]`` the mean
cosine similarity of the student's outputs to the teacher's on that set at ``step[i]``
(``compressor.curves`` draws it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Curve:
    """Collects points: ``loss()`` after every step, ``point()`` when a point is due."""

    def __init__(self, attempt: int = 0) -> None:
        self.attempt = attempt
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.validation: dict[str, list[float]] = {}
        self._pending: list[float] = []

    def loss(self, value: float) -> None:
        self._pending.append(value)

    def point(self, step: int, validation: Mapping[str, float]) -> None:
        """A point at ``step``: the mean of the losses since the last point, and each set's score."""
        self.steps.append(step)
        self.losses.append(float(np.mean(self._pending)) if self._pending else float("nan"))
        self._pending = []
        for name, value in validation.items():
            self.validation.setdefault(name, []).append(float(value))

    def latest(self) -> dict[str, float]:
        """The last point's validation scores (what a progress display shows)."""
        return {name: values[-1] for name, values in self.validation.items() if values}

    def as_settings(self) -> dict[str, Any]:
        return {
            "step": list(self.steps),
            "loss": list(self.losses),
            "validation": {name: list(values) for name, values in self.validation.items()},
            "attempt": self.attempt,
        }


class TeacherCosine:
    """Mean cosine of a student's outputs to the teacher's on fixed validation inputs (teacher run once)."""

    def __init__(self, teacher: nn.Module, sets: Mapping[str, np.ndarray]) -> None:
        self._inputs = {
            name: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            for name, x in sets.items()
            if len(x)
        }
        with torch.no_grad():
            self._targets = {name: teacher.eval()(x) for name, x in self._inputs.items()}

    def __call__(self, student: nn.Module) -> dict[str, float]:
        """Scores of ``student`` in eval mode; its train/eval mode is restored afterwards."""
        was_training = student.training
        student.eval()
        try:
            with torch.no_grad():
                return {
                    name: float(
                        F.cosine_similarity(student(x).flatten(1), self._targets[name].flatten(1)).mean()
                    )
                    for name, x in self._inputs.items()
                }
        finally:
            student.train(was_training)
