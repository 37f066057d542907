"""Export a torch module to ONNX (TorchScript exporter, opset 17) and check parity against PyTorch."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

Feeds = dict[str, np.ndarray]
OPSET = 17


class ExportError(RuntimeError):
    pass


def apply(
    module: object,
    example_inputs: Feeds,
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    dst: Path,
) -> Path:
    import torch

    assert isinstance(module, torch.nn.Module)
    module.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in example_inputs.values())
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(dst),
            input_names=list(example_inputs),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(dst))
    return dst


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
