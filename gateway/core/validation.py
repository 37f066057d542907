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
from gateway.core.types import InferRequest, Tensor


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
                f"unexpected inference input {tensor.name!r} for model {model!r}; expected inputs: {sorted(expected)}"
            )
        if tensor.name in feeds:
            raise InvalidInput(f"input {tensor.name!r} is given more than once for model {model!r}")
        feeds[tensor.name] = _array(tensor, spec, config)
        if config.max_batch_size > 0:
            n = tensor.shape[0]
            if rows is not None and n != rows:
                raise InvalidInput(
                    f"input {tensor.name!r} of model {model!r} has batch size {n} but other inputs have {rows}"
                )
            rows = n
    missing = sorted(name for name, t in expected.items() if name not in feeds and not t.optional)
    if missing:
        raise InvalidInput(
            f"expected {len(expected)} inputs but got {len(feeds)} inputs for model {model!r}; missing {missing}"
        )
    if config.max_batch_size > 0 and rows is not None and not 1 <= rows <= config.max_batch_size:
        raise InvalidInput(
            f"inference request batch-size must be in [1, {config.max_batch_size}] for model {model!r}, got {rows}"
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
    if (
        len(shape) != len(expected)
        or any(e != -1 and e != s for e, s in zip(expected, shape))
        or min(shape, default=0) < 0
    ):
        raise InvalidInput(f"{where}: expected shape {list(expected)}, got {list(shape)}")
    data = tensor.data
    if data.size != math.prod(shape):
        raise InvalidInput(
            f"{where}: shape {list(shape)} needs {math.prod(shape)} elements, data has {data.size}"
        )
    if data.dtype != spec.datatype.numpy:
        raise InvalidInput(f"{where}: data of numpy type {data.dtype} does not hold {spec.datatype.value}")
    return data.reshape(shape) if data.shape != shape else data


def _outputs(request: InferRequest, config: ModelConfig) -> tuple[str, ...]:
    known = [t.name for t in config.outputs]
    if request.outputs is None:
        return tuple(known)
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
