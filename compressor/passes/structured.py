"""Structured prune + distil through the source's own routine, then export.

How a model is cut and retrained depends on its architecture, so the routine comes with the source
(``structured_cnn.make_structured`` for sequential CNNs, ``structured_transformer.make_structured`` for
BERT embedders): ``(teacher, settings, attempt) -> (student, info)``, where ``attempt`` counts up the
source's fallback ladder (0 = its defaults, 1+ = train longer / prune less).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.passes import export
from compressor.passes.base import PassResult, TorchModel

NAME = "structured prune + distil"


class NoMoreRungs(Exception):
    """The routine's fallback ladder is shorter than the attempts asked for: the ladder ends here."""


Routine = Callable[[Any, dict[str, Any], int], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class StructuredConfig:
    """The source's routine, the run's settings for it and the rung of its ladder to build."""

    routine: Routine
    settings: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0


def run(model: TorchModel, config: StructuredConfig, output: Path) -> PassResult:
    """Prune and distil a student of ``model.module`` with the source's routine; export it to ``output``."""
    student, info = config.routine(model.module, dict(config.settings), config.attempt)
    export.run(model.with_module(student), export.ExportConfig(), output)
    return PassResult(output, {"pass": NAME, "attempt": config.attempt, **info})
