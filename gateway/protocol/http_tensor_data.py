"""Tensors as the JSON ``data`` of KServe v2 bodies, both directions: nested or flat lists of numbers (or, for
BYTES, UTF-8 strings) to numpy arrays of the declared datatype and shape, checked element by element against
what the shape declares; and back to flat lists. ``dumps`` writes the JSON bodies (numpy values included).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from gateway.core.errors import InvalidInput
from gateway.core.types import Datatype, Tensor
from gateway.protocol.codec import ElementBudget, brief

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY

# Which JSON number kinds (numpy ``dtype.kind`` of the parsed list) each datatype accepts.
_ACCEPTED_KINDS: dict[Datatype, str] = {
    Datatype.BOOL: "b",
    **{d: "iu" for d in (Datatype.INT8, Datatype.INT16, Datatype.INT32, Datatype.INT64)},
    **{d: "iu" for d in (Datatype.UINT8, Datatype.UINT16, Datatype.UINT32, Datatype.UINT64)},
    **{d: "iuf" for d in (Datatype.FP16, Datatype.FP32, Datatype.FP64)},
}


def _flatten(data: object, out: list[object], limit: int, where: str) -> None:
    """The leaves of nested lists, in order, without recursion; refused once there are more than
    ``limit`` of them (so a request cannot make us walk more than it declares)."""
    stack: list[Any] = [iter((data,))]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            if len(out) >= limit:
                raise InvalidInput(f"{where}: 'data' has more than the {limit} elements its shape declares")
            out.append(item)


_END = object()


def tensor_from_json(
    name: str,
    datatype: Datatype,
    shape: tuple[int, ...],
    data: object,
    where: str,
    budget: ElementBudget | None = None,
) -> np.ndarray:
    count = (budget or ElementBudget()).take(shape, where)
    if datatype is Datatype.BYTES:
        flat: list[object] = []
        _flatten(data, flat, count, where)
        bad = next((x for x in flat if not isinstance(x, str)), None)
        if bad is not None:
            raise InvalidInput(f"{where}: BYTES 'data' must hold JSON strings, got {brief(bad)}")
        arr = np.empty(len(flat), dtype=object)
        arr[:] = [str(x).encode("utf-8") for x in flat]
    else:
        if isinstance(data, list) and data and not isinstance(data[0], list) and len(data) != count:
            raise InvalidInput(
                f"{where}: 'data' has {len(data)} elements, but shape {list(shape)} needs {count}"
            )
        try:
            parsed = np.asarray(data)
        except (ValueError, OverflowError, RecursionError) as e:
            raise InvalidInput(f"{where}: 'data' is not a regular array of numbers ({e})") from None
        if parsed.dtype.kind in "fO" and datatype.numpy.kind in "iu":
            parsed = _exact_integers(data, parsed)  # numpy turns [2**64 - 1, 0] into floats
        if parsed.size == 0:
            arr = np.empty(0, dtype=datatype.numpy)
        elif parsed.dtype.kind not in _ACCEPTED_KINDS[datatype]:
            sample = parsed.reshape(-1)[0]
            raise InvalidInput(
                f"{where}: 'data' holds {brief(sample)} ({parsed.dtype.kind!r} values), which is not valid "
                f"{datatype.value}"
            )
        else:
            if parsed.dtype.kind in "iu" and datatype.numpy.kind in "iu":
                info = np.iinfo(datatype.numpy)
                lo, hi = parsed.min(), parsed.max()
                if lo < info.min or hi > info.max:
                    bad_value = lo if lo < info.min else hi
                    raise InvalidInput(f"{where}: value {bad_value} is out of range for {datatype.value}")
            arr = parsed.astype(datatype.numpy, copy=False)
    if arr.size != count:
        raise InvalidInput(f"{where}: 'data' has {arr.size} elements, but shape {list(shape)} needs {count}")
    return arr.reshape(shape)


def _exact_integers(data: object, parsed: np.ndarray) -> np.ndarray:
    """JSON integers that numpy could not type exactly (beyond int64), kept exact when they fit uint64."""
    flat: list[object] = []
    _flatten(data, flat, parsed.size, "data")
    ints = [x for x in flat if type(x) is int]
    if not ints or len(ints) != len(flat) or min(ints) < 0 or max(ints) > np.iinfo(np.uint64).max:
        return parsed
    return np.array(ints, dtype=np.uint64).reshape(parsed.shape)


def json_data(tensor: Tensor) -> object:
    """The flat JSON ``data`` of ``tensor``; ``None`` when it cannot be JSON (non-UTF-8 BYTES)."""
    if tensor.datatype is Datatype.BYTES:
        try:
            return [
                x.decode("utf-8") if isinstance(x, bytes) else str(x)
                for x in np.asarray(tensor.data, dtype=object).reshape(-1).tolist()
            ]
        except UnicodeDecodeError:
            return None
    return np.ascontiguousarray(tensor.data, dtype=tensor.datatype.numpy).reshape(-1)


def dumps(obj: object) -> bytes:
    return orjson.dumps(obj, option=_JSON_OPTS, default=_default)


def _default(obj: object) -> object:
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
