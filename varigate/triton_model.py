"""The Triton Python-backend model that serves a varigate variant's ONNX file with onnxruntime.

``varigate triton-repo`` copies this file as ``<model>/<version>/model.py`` for Triton builds without the
onnxruntime backend (PyPI's nvidia-pytriton wheel). It runs inside Triton's Python stub, in a Debian
python3.11 venv with only numpy and onnxruntime: it imports nothing from varigate.

- ``initialize``: one onnxruntime session per model instance, created once, with the intra-op threads and
  spinning that config.pbtxt ``parameters`` name (``PARAM_*`` below; ``triton_repo`` writes them).
- ``execute``: all requests of Triton's dynamic batch concatenated along the batch dimension, one
  ``session.run``, outputs split back by rows. Inputs with ``allow_ragged_batch`` (``triton_repo`` sets it
  on the inputs the gateway would pad) are right-padded with 0 to the batch's longest; an output axis that
  config.pbtxt declares variable and that has the batch's padded length is cut back to each request's own
  length, as the gateway's batcher does (``gateway/core/batching/padding.py``). A model with
  ``max_batch_size: 0`` has no batch dimension: each request runs alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

try:
    import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]
except ImportError:  # outside Triton (triton_repo, tests): the batching functions below still work
    pb_utils = None

PARAM_INTRA_OP_THREADS = "varigate.triton.intra_op_threads"
PARAM_SPINNING = "varigate.triton.spinning"  # "1" or "0"
PARAM_ONNX_FILE = "varigate.triton.onnx_file"  # the ONNX file's name inside the version directory
DEFAULT_ONNX_FILE = "model.onnx"

Feeds = Mapping[str, np.ndarray]


class Layout:
    """Where each request's rows sit in a merged batch, and how long it was along each padded axis."""

    __slots__ = ("lengths", "padded", "rows")

    def __init__(self, rows: list[int], lengths: list[dict[int, int]], padded: dict[int, int]) -> None:
        self.rows = rows  # rows per request, in batch order
        self.lengths = lengths  # per request: array axis -> its own length (padded inputs only)
        self.padded = padded  # array axis -> the batch's length, for axes some request was padded along


def merge(requests: Sequence[Feeds], ragged: frozenset[str]) -> tuple[dict[str, np.ndarray], Layout]:
    """One feed for the whole batch. Raises ``ValueError`` for shapes that differ where no padding is
    allowed (Triton batches such requests only when the input allows ragged batches)."""
    if not requests:
        raise ValueError("cannot merge an empty batch")
    rows = [int(next(iter(r.values())).shape[0]) for r in requests]
    lengths: list[dict[int, int]] = [{} for _ in requests]
    padded: dict[int, int] = {}
    merged: dict[str, np.ndarray] = {}
    for name in requests[0]:
        arrays = [r[name] for r in requests]
        shapes = {a.shape[1:] for a in arrays}
        if name in ragged:
            for i, a in enumerate(arrays):
                for axis in range(1, a.ndim):
                    lengths[i][axis] = max(lengths[i].get(axis, 0), a.shape[axis])
        if len(shapes) == 1:
            merged[name] = np.concatenate(arrays, axis=0)
            continue
        if name not in ragged or len({a.ndim for a in arrays}) != 1:
            raise ValueError(f"input {name!r} has shapes {sorted(shapes)} in one batch and may not be padded")
        target = tuple(max(s[i] for s in shapes) for i in range(arrays[0].ndim - 1))
        for axis, size in enumerate(target, start=1):
            if any(a.shape[axis] != size for a in arrays):
                padded[axis] = max(padded.get(axis, 0), size)
        out = np.zeros((sum(rows), *target), dtype=arrays[0].dtype)
        start = 0
        for a in arrays:
            out[(slice(start, start + a.shape[0]), *(slice(0, d) for d in a.shape[1:]))] = a
            start += a.shape[0]
        merged[name] = out
    return merged, Layout(rows, lengths, padded)


def split(
    outputs: Mapping[str, np.ndarray], layout: Layout, variable_axes: Mapping[str, tuple[int, ...]]
) -> list[dict[str, np.ndarray]]:
    """Per request, in batch order; ``variable_axes``: each output's -1 axes as array axes (batch = 0).
    Raises ``ValueError`` when an output does not have the batch's rows."""
    total = sum(layout.rows)
    pieces: list[dict[str, np.ndarray]] = [{} for _ in layout.rows]
    for name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != total:
            raise ValueError(f"output {name!r} has shape {arr.shape}; expected {total} rows first")
        cut = [
            a
            for a in variable_axes.get(name, ())
            if a in layout.padded and a < arr.ndim and arr.shape[a] == layout.padded[a]
        ]
        start = 0
        for i, n in enumerate(layout.rows):
            piece = arr[start : start + n]
            if cut:
                index = [slice(None)] * arr.ndim
                for axis in cut:
                    index[axis] = slice(0, layout.lengths[i].get(axis, arr.shape[axis]))
                piece = np.ascontiguousarray(piece[tuple(index)])
            pieces[i][name] = piece
            start += n
    return pieces


def session_options(parameters: Mapping[str, str]) -> ort.SessionOptions:
    """onnxruntime options from config.pbtxt parameters: intra-op threads (default 1), spinning (on)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(parameters.get(PARAM_INTRA_OP_THREADS, "1"))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spinning = parameters.get(PARAM_SPINNING, "1")
    if spinning not in ("0", "1"):
        raise ValueError(f"parameter {PARAM_SPINNING} is {spinning!r}; expected '0' or '1'")
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    return options


def _flag(value: object) -> bool:
    return value is True or value == "true"


class TritonPythonModel:
    """The class Triton's Python backend instantiates once per model instance."""

    def initialize(self, args: Mapping[str, str]) -> None:
        config: dict[str, Any] = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        onnx_file = parameters.get(PARAM_ONNX_FILE, DEFAULT_ONNX_FILE)
        path = os.path.join(args["model_repository"], args["model_version"], onnx_file)
        self.session = ort.InferenceSession(
            path, session_options(parameters), providers=["CPUExecutionProvider"]
        )
        self.batched = int(config.get("max_batch_size", 0)) > 0
        skip = 1 if self.batched else 0  # config dims leave the batch dimension out
        self.inputs = [t["name"] for t in config.get("input", [])]
        self.ragged = frozenset(
            t["name"] for t in config.get("input", []) if _flag(t.get("allow_ragged_batch"))
        )
        self.outputs = [t["name"] for t in config.get("output", [])]
        self.variable_axes = {
            t["name"]: tuple(i + skip for i, d in enumerate(t.get("dims", [])) if int(d) == -1)
            for t in config.get("output", [])
        }

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        feeds = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
            for r in requests
        ]
        groups = [feeds] if self.batched else [[f] for f in feeds]
        return [response for group in groups for response in self._answer(group)]

    def _answer(self, feeds: list[dict[str, np.ndarray]]) -> list[Any]:
        """One session run for ``feeds`` (a batch, or one request of a model without a batch dimension)."""
        try:
            if self.batched:
                merged, layout = merge(feeds, self.ragged)
                pieces = split(self._run(merged), layout, self.variable_axes)
            else:
                pieces = [self._run(feeds[0])]
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types; each request gets it
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))) for _ in feeds]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in p.items()])
            for p in pieces
        ]

    def _run(self, feed: Feeds) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, dict(feed))
        return dict(zip(self.outputs, values, strict=True))
