"""A user's own model: a ``torch.nn.Module`` named by import path, or an existing ONNX file.

Inputs come from an ``.npz`` file whose arrays are named after the model's inputs (batch first); its
rows are split into evaluation and calibration halves. With ``labels`` (a ``.npy`` of class ids for the
rows) the model is gated on top-1 accuracy, otherwise on mean cosine similarity of its first output to
fp32's (fidelity).
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from compressor.repository import ServingSpec, TensorSpec
from compressor.source import Source


class SourceError(ValueError):
    """A user-supplied source that cannot be used; the message names it."""


def load_object(path: str) -> Any:
    """Import ``package.module:attr`` (or ``package.module.attr``)."""
    mod_name, sep, attr = path.partition(":")
    if not sep:
        mod_name, _, attr = path.rpartition(".")
    if not mod_name or not attr:
        raise SourceError(f"import path {path!r} is not of the form 'package.module:attr'")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise SourceError(f"cannot import {path!r}: {e}") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise SourceError(f"cannot import {path!r}: module {mod_name!r} has no attribute {attr!r}") from None
    return obj


def load_inputs(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            feeds = {k: np.ascontiguousarray(data[k]) for k in data.files}
    except (OSError, ValueError) as e:
        raise SourceError(f"cannot read inputs {str(path)!r}: {e}") from None
    if not feeds:
        raise SourceError(f"inputs file {str(path)!r} holds no arrays")
    rows = {len(v) for v in feeds.values()}
    if len(rows) != 1 or 0 in rows:
        raise SourceError(
            f"inputs in {str(path)!r} must share a non-zero batch dimension, got {sorted(rows)}"
        )
    return feeds


def _split(
    feeds: dict[str, np.ndarray], batch: int
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    n = len(next(iter(feeds.values())))
    if n < 2:
        raise SourceError("need at least 2 input rows: one half evaluates, the other calibrates")
    half = max(1, n // 2)

    def batches(lo: int, hi: int) -> list[dict[str, np.ndarray]]:
        return [{k: v[i : min(i + batch, hi)] for k, v in feeds.items()} for i in range(lo, hi, batch)]

    return batches(0, half), batches(half, n)


def _specs(feeds: dict[str, np.ndarray], names: list[str], outputs: dict[str, np.ndarray]) -> ServingSpec:
    ins = tuple(TensorSpec(k, str(v.dtype), tuple(v.shape[1:])) for k, v in feeds.items())
    outs = tuple(
        TensorSpec(n, str(o.dtype), tuple(o.shape[1:])) for n, o in zip(names, outputs.values(), strict=True)
    )
    return ServingSpec(inputs=ins, outputs=outs, max_batch_size=32, preferred_batch_sizes=(8,))


def _common(name: str, feeds: dict[str, np.ndarray], labels: Path | None) -> dict[str, Any]:
    ev, cal = _split(feeds, 32)
    label_arr = None
    if labels is not None:
        try:
            label_arr = np.load(labels, allow_pickle=False)[: sum(len(next(iter(b.values()))) for b in ev)]
        except (OSError, ValueError) as e:
            raise SourceError(f"cannot read labels {str(labels)!r}: {e}") from None

    def profile_feeds(bs: int) -> dict[str, np.ndarray]:
        return {k: np.resize(v, (bs, *v.shape[1:])) for k, v in feeds.items()}

    return {
        "logical_model": name,
        "task": "classification" if label_arr is not None else "embedding",
        "example_inputs": {k: v[:2] if len(v) >= 2 else np.concatenate([v, v]) for k, v in feeds.items()},
        "eval_batches": ev,
        "eval_labels": label_arr,
        "calib_batches": cal,
        "profile_feeds": profile_feeds,
        "dynamic_axes": {k: {0: "batch"} for k in feeds},
        "int8_mode": "dynamic",
    }


def from_onnx(name: str, onnx_path: Path, inputs: Path, labels: Path | None = None) -> Source:
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        raise SourceError(
            f"ONNX file {str(onnx_path)!r} failed to load: {str(e).splitlines()[0][:300]}"
        ) from None
    feeds = load_inputs(inputs)
    expected = [i.name for i in sess.get_inputs()]
    if sorted(expected) != sorted(feeds):
        raise SourceError(f"inputs file names {sorted(feeds)}, the model expects {expected}")
    feeds = {k: feeds[k] for k in expected}
    out_names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(out_names, sess.run(None, {k: v[:2] for k, v in feeds.items()}), strict=True))
    common = _common(name, feeds, labels)
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()[:16]
    return Source(
        serving=_specs(feeds, out_names, outs),
        torch_module=None,
        onnx_path=onnx_path,
        fingerprint=f"onnx:{digest}",
        **common,
    )


def from_module(name: str, import_path: str, inputs: Path, labels: Path | None = None) -> Source:
    import torch

    obj = load_object(import_path)
    module = obj() if not isinstance(obj, torch.nn.Module) and callable(obj) else obj
    if not isinstance(module, torch.nn.Module):
        raise SourceError(f"{import_path!r} is not a torch.nn.Module nor a callable returning one")
    module.eval()
    feeds = load_inputs(inputs)
    with torch.no_grad():
        out = module(*(torch.from_numpy(v[:2]) for v in feeds.values()))
    out = out[0] if isinstance(out, (tuple, list)) else out
    outs = {"output": out.numpy()}
    common = _common(name, feeds, labels)
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    common["dynamic_axes"] = {**common["dynamic_axes"], "output": {0: "batch"}}
    return Source(
        serving=_specs(feeds, ["output"], outs),
        torch_module=module,
        fingerprint=f"module:{h.hexdigest()[:16]}",
        **common,
    )
