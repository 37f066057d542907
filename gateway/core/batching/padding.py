"""Merging requests into one batch and splitting the batch's outputs back, with zero-padding of
variable-length inputs (the transformer's ``input_ids`` / ``attention_mask``).

Axis numbers below are positions in a tensor's config ``dims`` (the batch dimension not counted).
Only inputs the config lets the batcher pad (``ModelConfig.pad_inputs``) are padded, and only along their
-1 axes; requests that differ anywhere else never share a batch (``signature``). An output with a -1 axis
whose batch size along it equals the padded length is cut back to each request's own length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gateway.core.config import ModelConfig

Feeds = Mapping[str, np.ndarray]
Signature = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class BatchLayout:
    rows: tuple[int, ...]  # rows per request, in batch order
    lengths: tuple[dict[int, int], ...]  # per request: padded axis -> its own length
    padded: dict[int, int]  # padded axis -> the batch's length (0 when no request needed padding)

    @property
    def total_rows(self) -> int:
        return sum(self.rows)


def signature(config: ModelConfig, feeds: Feeds) -> Signature:
    """Requests with equal signatures can share a batch: the shapes of everything that is not padded."""
    return shape_signature(config, {name: array.shape for name, array in feeds.items()})


def shape_signature(config: ModelConfig, shapes: Mapping[str, tuple[int, ...]]) -> Signature:
    """``signature`` from the inputs' shapes alone (batch dimension included, as in a request)."""
    batched = 1 if config.max_batch_size > 0 else 0
    pad = config.pad_inputs
    sig: list[tuple[str, tuple[int, ...]]] = []
    for name in sorted(shapes):
        shape = tuple(shapes[name][batched:])
        if name in pad:
            var = set(config.input(name).variable_axes)
            shape = tuple(-1 if i in var else d for i, d in enumerate(shape))
        sig.append((name, shape))
    return tuple(sig)


def merge(config: ModelConfig, requests: Sequence[Feeds]) -> tuple[dict[str, np.ndarray], BatchLayout]:
    """One feed dict for the whole batch. Requests must share a ``signature``."""
    if not requests:
        raise ValueError("cannot merge an empty batch")
    if config.max_batch_size <= 0 or len(requests) == 1:
        rows = requests[0][next(iter(requests[0]))].shape[0] if config.max_batch_size > 0 else 1
        return dict(requests[0]), BatchLayout((rows,), ({},), {})
    pad = config.pad_inputs
    rows = tuple(next(iter(r.values())).shape[0] for r in requests)
    lengths: list[dict[int, int]] = [{} for _ in requests]
    padded: dict[int, int] = {}
    merged: dict[str, np.ndarray] = {}
    for name in requests[0]:
        arrays = [r[name] for r in requests]
        shapes = {a.shape[1:] for a in arrays}
        if name in pad:
            for axis in config.input(name).variable_axes:
                for i, a in enumerate(arrays):
                    lengths[i][axis] = max(lengths[i].get(axis, 0), a.shape[axis + 1])
        if len(shapes) == 1:
            merged[name] = np.concatenate(arrays, axis=0)
            continue
        if name not in pad:
            raise ValueError(f"input {name!r} has shapes {sorted(shapes)} in one batch and may not be padded")
        target = tuple(max(s[i] for s in shapes) for i in range(len(arrays[0].shape) - 1))
        for axis in config.input(name).variable_axes:
            padded[axis] = max(padded.get(axis, 0), target[axis])
        out = np.zeros((sum(rows), *target), dtype=arrays[0].dtype)
        start = 0
        for a in arrays:
            out[(slice(start, start + a.shape[0]), *(slice(0, d) for d in a.shape[1:]))] = a
            start += a.shape[0]
        merged[name] = out
    return merged, BatchLayout(rows, tuple(lengths), padded)


def split(
    config: ModelConfig, outputs: Mapping[str, np.ndarray], layout: BatchLayout
) -> list[dict[str, np.ndarray]]:
    """Per request, in batch order. Raises ``ValueError`` when an output does not have the batch's rows."""
    if config.max_batch_size <= 0:
        return [dict(outputs)]
    total = layout.total_rows
    pieces: list[dict[str, np.ndarray]] = [{} for _ in layout.rows]
    for name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != total:
            raise ValueError(f"output {name!r} has shape {arr.shape}; expected {total} rows first")
        cut_axes = _cut_axes(config, name, arr, layout)
        start = 0
        for i, n in enumerate(layout.rows):
            piece = arr[start : start + n]
            if cut_axes:
                index = [slice(None)] * arr.ndim
                for axis in cut_axes:
                    index[axis + 1] = slice(0, layout.lengths[i][axis])
                piece = np.ascontiguousarray(piece[tuple(index)])
            pieces[i][name] = piece
            start += n
    return pieces


def _cut_axes(config: ModelConfig, name: str, arr: np.ndarray, layout: BatchLayout) -> tuple[int, ...]:
    if not layout.padded:
        return ()
    try:
        variable = config.output(name).variable_axes
    except KeyError:
        return ()
    return tuple(
        a
        for a in variable
        if a in layout.padded and a + 1 < arr.ndim and arr.shape[a + 1] == layout.padded[a]
    )


def length(config: ModelConfig, feeds: Feeds) -> int:
    """The sequence length of a (merged) batch: the largest extent of any variable input axis; 0 when the
    model has none. What the latency model scales a profile by."""
    batched = 1 if config.max_batch_size > 0 else 0
    found = 0
    for t in config.inputs:
        array = feeds.get(t.name)
        if array is None:
            continue
        for axis in t.variable_axes:
            if axis + batched < array.ndim:
                found = max(found, int(array.shape[axis + batched]))
    return found
