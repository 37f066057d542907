"""Export a torch module to ONNX (TorchScript exporter, opset 17) and check parity against PyTorch."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from compressor.passes.base import Feeds, PassResult, TorchModel

OPSET = 17
NAME = f"torch.onnx.export (TorchScript), opset {OPSET}"


class ExportError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """``parity_batches``: inputs on which onnxruntime's outputs must match torch's within ``parity_atol``
    (none: no parity check, as for students that the accuracy gate judges instead)."""

    parity_batches: Sequence[Feeds] = ()
    parity_atol: float = 1e-4


def run(model: TorchModel, config: ExportConfig, output: Path) -> PassResult:
    """Export ``model`` to ``output`` (checked by onnx), then check parity on ``config.parity_batches``."""
    import torch

    module = model.module
    assert isinstance(module, torch.nn.Module)
    module.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in model.example_inputs.values())
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(output),
            input_names=list(model.example_inputs),
            output_names=list(model.output_names),
            dynamic_axes=model.dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(output))
    settings: dict[str, object] = {"pass": NAME}
    if config.parity_batches:
        settings["parity_max_abs_diff"] = parity(module, output, config.parity_batches, config.parity_atol)
    return PassResult(output, settings)


def torch_outputs(module: object, feeds: Feeds) -> np.ndarray:
    import torch

    assert isinstance(module, torch.nn.Module)
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()))
    if isinstance(out, (tuple, list)):
        out = out[0]
    return np.asarray(out.detach().float().numpy())


def parity(module: object, onnx_path: Path, batches: Sequence[Feeds], atol: float) -> float:
    """Largest |onnxruntime - torch| over ``batches``; raises ExportError above ``atol``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for feeds in batches:
        got = sess.run(None, feeds)[0]
        want = torch_outputs(module, feeds)
        worst = max(worst, float(np.max(np.abs(got.astype(np.float32) - want))))
    if worst > atol:
        raise ExportError(f"ONNX export differs from PyTorch by {worst:.3g} (> {atol:g})")
    return worst
