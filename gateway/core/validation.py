"""Checking a request against its model's config before it may join a batch, so one bad request never
reaches (and fails) a batch of good ones. Every message names the input and what was expected."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.core.config import ModelConfig, TensorConfig
from gateway.core.errors import InvalidInput
from gateway.core.types import Datatype, InferRequest, Tensor

# ONNX string tensors hold UTF-8 text (onnx.proto, ``TensorProto.string_data``), and onnxruntime's Python API
# takes nothing else: other bytes must be refused here, not fail the batch they would join.
_ONNX_PLATFORM, _ONNX_BACKEND = "onnxruntime_onnx", "onnxruntime"


@dataclass(frozen=True, slots=True)
class ValidRequest:
    feeds: dict[str, np.ndarray]
    rows: int  # batch elements (1 for a model that does not batch)
    priority: int  # the request's ``priority`` parameter, 0 = not given
    timeout_us: int  # the request's ``timeout`` parameter, 0 = not given
    outputs: tuple[str, ...]  # output names to return, in order


def validate(request: InferRequest, config: ModelConfig) -> ValidRequest:
    model = config.name
    expected = {t.name: t for t in config.inputs}
    feeds: dict[str, np.ndarray] = {}
    rows: int | None = None
    for tensor in request.inputs:
        spec = expected.get(tensor.name)
        if spec is None:
            raise InvalidInput(
                f"unexpected inference input {_short(tensor.name)!r} for model {model!r}; "
                f"expected inputs: {sorted(expected)}"
            )
        if tensor.name in feeds:
            raise InvalidInput(f"input {tensor.name!r} is given more than once for model {model!r}")
        feeds[tensor.name] = _array(tensor, spec, config)
        if config.max_batch_size > 0:
            n = tensor.shape[0]
            if rows is not None and n != rows:
                raise InvalidInput(
                    f"input {tensor.name!r} of model {model!r} has batch size {n} but other inputs have "
                    f"{rows}"
                )
            rows = n
    _check_shared_axes(feeds, config)
    missing: list[str] = []  # every feed is an expected input, once: as many as inputs, none is missing
    if len(feeds) != len(expected):
        missing = sorted(name for name, t in expected.items() if name not in feeds and not t.optional)
    if missing:
        raise InvalidInput(
            f"expected {len(expected)} inputs but got {len(feeds)} inputs for model {model!r}; missing "
            f"{missing}"
        )
    if config.max_batch_size > 0 and rows is not None and not 1 <= rows <= config.max_batch_size:
        raise InvalidInput(
            f"inference request batch-size must be in [1, {config.max_batch_size}] for model {model!r}, got "
            f"{rows}"
        )
    outputs = _outputs(request, config)
    return ValidRequest(
        feeds,
        rows or 1,
        _uint_param(request.parameters, "priority", model),
        _uint_param(request.parameters, "timeout", model),
        outputs,
    )


def _array(tensor: Tensor, spec: TensorConfig, config: ModelConfig) -> np.ndarray:
    where = f"input {tensor.name!r} of model {config.name!r}"
    if tensor.datatype is not spec.datatype:
        raise InvalidInput(f"{where}: expected datatype {spec.datatype.value}, got {tensor.datatype.value}")
    shape = tuple(tensor.shape)
    expected = ((-1,) if config.max_batch_size > 0 else ()) + spec.dims
    fits, empty = len(shape) == len(expected), -1
    for i, (e, s) in enumerate(zip(expected, shape, strict=True) if fits else ()):
        if s < 0 or (e != -1 and e != s):  # one pass: a mismatch or a negative size, the first empty axis
            fits = False
        elif e == -1 and s == 0 and empty < 0:
            empty = i
    if not fits:
        raise InvalidInput(f"{where}: expected shape {list(expected)}, got {list(shape)}")
    if empty >= 0:
        raise InvalidInput(
            f"{where}: shape {list(shape)} has size 0 in variable dimension {empty}; this server runs "
            "no empty tensors"
        )
    data = tensor.data
    if data.size != math.prod(shape):
        raise InvalidInput(
            f"{where}: shape {list(shape)} needs {math.prod(shape)} elements, data has {data.size}"
        )
    if data.dtype != spec.datatype.numpy:
        raise InvalidInput(f"{where}: data of numpy type {data.dtype} does not hold {spec.datatype.value}")
    if spec.datatype is Datatype.BYTES and (
        config.platform == _ONNX_PLATFORM or config.backend == _ONNX_BACKEND
    ):
        _check_utf8(data, where)
    return data.reshape(shape) if data.shape != shape else data


def _check_shared_axes(feeds: Mapping[str, np.ndarray], config: ModelConfig) -> None:
    """Inputs the batcher pads together share their variable axes (a transformer's ``input_ids`` and
    ``attention_mask`` share the sequence length): they must agree, or the request would fail in the
    backend or, worse, be padded into a wrong answer."""
    batched = 1 if config.max_batch_size > 0 else 0
    pad = config.pad_inputs
    first: dict[int, tuple[str, int]] = {}
    for spec in config.inputs:
        if spec.name not in pad or spec.name not in feeds:
            continue
        for axis in spec.variable_axes:
            size = feeds[spec.name].shape[batched + axis]
            other, other_size = first.setdefault(axis, (spec.name, size))
            if other_size != size:
                raise InvalidInput(
                    f"inputs {other!r} and {spec.name!r} of model {config.name!r} share variable dimension "
                    f"{batched + axis} but disagree: {other!r} has {other_size}, {spec.name!r} has {size}"
                )


def _short(name: str) -> str:
    return name if len(name) <= 200 else name[:200] + "..."


def _check_utf8(data: np.ndarray, where: str) -> None:
    for i, item in enumerate(data.reshape(-1).tolist()):
        if isinstance(item, bytes):
            try:
                item.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidInput(
                    f"{where}: BYTES element {i} ({item[:16]!r}) is not UTF-8 ({e.reason} at byte "
                    f"{e.start}); "
                    "an ONNX model's string tensors hold UTF-8 text"
                ) from None


def _outputs(request: InferRequest, config: ModelConfig) -> tuple[str, ...]:
    if request.outputs is None:
        return tuple(t.name for t in config.outputs)
    known = [t.name for t in config.outputs]
    names: list[str] = []
    for out in request.outputs:
        if out.name not in known:
            raise InvalidInput(
                f"unexpected inference output {out.name!r} for model {config.name!r}; outputs: {known}"
            )
        if out.name not in names:
            names.append(out.name)
    return tuple(names)


def _uint_param(parameters: Mapping[str, Any], key: str, model: str) -> int:
    value = parameters.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(
            f"request parameter {key!r} for model {model!r} must be a non-negative integer, got {value!r}"
        )
    return value
