"""Unstructured global magnitude pruning with ``torch.nn.utils.prune``, made permanent, then exported.

Zeros are not skipped by onnxruntime's dense kernels, so this variant is as fast as fp32: its value is
a measured accuracy/sparsity point (and smaller compressed files), reported honestly in its card.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.passes import export
from compressor.passes.base import PassResult, TorchModel

NAME = "prune"


@dataclass(frozen=True, slots=True)
class PruneAmount:
    """``amount``: the fraction of all Linear/Conv weights zeroed, in (0, 1)."""

    amount: float


def run(model: TorchModel, config: PruneAmount, output: Path) -> PassResult:
    """Prune a copy of ``model.module`` and export it to ``output``."""
    student, info = _prune(model.module, config.amount)
    export.run(model.with_module(student), export.ExportConfig(), output)
    return PassResult(output, {"pass": NAME, **info})


def _prune(teacher: Any, amount: float) -> tuple[Any, dict[str, Any]]:
    import torch
    from torch.nn.utils import prune

    student = copy.deepcopy(teacher).eval()
    targets = [
        (m, "weight")
        for m in student.modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)) and m.weight.numel() > 0
    ]
    if not targets:
        raise ValueError("model has no Linear or Conv layers to prune")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in targets:
        prune.remove(module, name)  # make permanent: the mask is folded into the weight
    pruned_zero = sum(int((m.weight == 0).sum()) for m, _ in targets)
    pruned_total = sum(m.weight.numel() for m, _ in targets)
    all_zero = sum(int((p == 0).sum()) for p in student.parameters())
    all_total = sum(p.numel() for p in student.parameters())
    return student, {
        "method": "global L1 unstructured (torch.nn.utils.prune), permanent",
        "amount": amount,
        "sparsity_pruned_layers": pruned_zero / pruned_total,
        "sparsity_all_parameters": all_zero / all_total,
        "pruned_layers": len(targets),
    }
