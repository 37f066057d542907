"""Wire pieces shared by the HTTP and gRPC codecs: datatypes, shapes, raw tensor buffers and Triton's
BYTES serialisation (each element: 4-byte little-endian length, then the bytes).

Everything here raises :class:`~gateway.core.errors.InvalidInput` with a message naming the tensor and
the bad value; the service then checks the request against the model (names, datatypes, shapes).

**Bounded work.** A request's declared shapes are checked before anything is allocated or walked: the
number of dimensions first, then each dimension, then the element count (multiplied with an early stop,
so no product grows past the limit), all against :class:`RequestLimits`, and then against the bytes or
elements actually present. So refusing a request costs O(its own size), whatever its shapes say.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.core.errors import InvalidInput, Unsupported
from gateway.core.types import Datatype, Tensor

_LEN = struct.Struct("<I")

# Request parameters that steer the wire format and never reach the service.
WIRE_ONLY_PARAMETERS = frozenset({"binary_data_output"})
# Tensor parameters that belong to the wire format, not to the tensor.
WIRE_TENSOR_PARAMETERS = frozenset({"binary_data_size", "binary_data"})
SHARED_MEMORY_PARAMETERS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
# The largest HTTP request body (after decompression) and gRPC message a server takes by default.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
# Looked up once, not per tensor: the datatype of each wire name, and each datatype's little-endian dtype.
_DATATYPES = {d.value: d for d in Datatype}
_LITTLE_ENDIAN = {d: d.numpy.newbyteorder("<") for d in Datatype}


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Per-request bounds on what a request may declare, checked before any allocation."""

    max_elements: int = 1 << 26  # all input elements of one request together (64 Mi)
    max_dims: int = 16  # dimensions of one tensor (ONNX models rarely use more than 6)
    max_inputs: int = 256  # tensors in one request

    def __post_init__(self) -> None:
        if min(self.max_elements, self.max_dims, self.max_inputs) < 1:
            raise ValueError(f"request limits must be >= 1, got {self}")


DEFAULT_LIMITS = RequestLimits()


class ElementBudget:
    """What is left of a request's element limit while its inputs are decoded, one tensor at a time."""

    __slots__ = ("inputs", "left", "limits")

    def __init__(self, limits: RequestLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.left = limits.max_elements
        self.inputs = 0

    def take_input(self, where: str) -> None:
        self.inputs += 1
        if self.inputs > self.limits.max_inputs:
            raise InvalidInput(f"{where}: the request has more than {self.limits.max_inputs} inputs")

    def take(self, shape: tuple[int, ...], where: str) -> int:
        """The element count of ``shape``, taken from what is left; refused (with an early stop, so no
        product grows past the limit) when it does not fit."""
        try:
            count = element_count(shape, where, self.left)
        except InvalidInput:
            used = self.limits.max_elements - self.left
            raise InvalidInput(
                f"{where}: shape {_shape_text(shape)} takes the request over its limit of "
                f"{self.limits.max_elements} elements" + (f" ({used} used by earlier inputs)" if used else "")
            ) from None
        self.left -= count
        return count


def parse_datatype(value: object, where: str) -> Datatype:
    known = _DATATYPES.get(value) if isinstance(value, str) else None
    if known is not None:
        return known
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: 'datatype' must be a string, got {brief(value)}")
    try:
        return Datatype.parse(value)
    except ValueError as e:
        raise InvalidInput(f"{where}: {e}") from None


def brief(value: object, limit: int = 120) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (a message must not echo a
    whole request back); big containers are not even formatted whole."""
    if isinstance(value, (list, tuple, dict, str, bytes)) and len(value) > limit:
        value = value[:limit] if not isinstance(value, dict) else dict(list(value.items())[:8])
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape_text(shape: Any) -> str:
    """A shape for a message, cut short when it is long (a request must not make us print megabytes)."""
    items = list(shape[:8])
    more = f", ... ({len(shape)} dimensions)" if len(shape) > 8 else ""
    return "[" + ", ".join(map(str, items)) + more + "]"


def parse_shape(value: object, where: str, limits: RequestLimits = DEFAULT_LIMITS) -> tuple[int, ...]:
    """A declared shape: a list of at most ``limits.max_dims`` integers in [0, ``limits.max_elements``]."""
    # lists and tuples first: isinstance against the Sequence ABC is the slow path
    if not isinstance(value, (list, tuple)) and (
        not isinstance(value, Sequence) or isinstance(value, (str, bytes))
    ):
        raise InvalidInput(f"{where}: 'shape' must be a list of integers, got {type(value).__name__}")
    if len(value) > limits.max_dims:
        raise InvalidInput(
            f"{where}: 'shape' has {len(value)} dimensions, more than the limit of {limits.max_dims}"
        )
    for d in value:
        if type(d) is not int and (not isinstance(d, int) or isinstance(d, bool)):
            raise InvalidInput(f"{where}: 'shape' must be a list of integers, got {_shape_text(value)}")
        if d < 0:
            raise InvalidInput(f"{where}: 'shape' {_shape_text(value)} has a negative dimension")
        if d > limits.max_elements:
            raise InvalidInput(
                f"{where}: 'shape' {_shape_text(value)} has dimension {d}, over the limit of "
                f"{limits.max_elements} elements per request"
            )
    return tuple(value)


def element_count(shape: tuple[int, ...], where: str = "tensor", limit: int | None = None) -> int:
    """The product of ``shape``; with ``limit``, refused as soon as the running product passes it (so
    the product of any declared shape costs O(its dimensions) small multiplications)."""
    if limit is None:
        return math.prod(shape)
    if 0 in shape:
        return 0
    count = 1
    for d in shape:
        count *= d
        if count > limit:
            raise InvalidInput(
                f"{where}: shape {_shape_text(shape)} declares more than {limit} elements, the limit "
                "of this request"
            )
    return count


def reject_shared_memory(parameters: dict[str, Any] | Any, where: str) -> None:
    if not parameters:
        return
    for key in SHARED_MEMORY_PARAMETERS:
        if key in parameters:
            raise Unsupported(f"{where}: shared-memory tensors ('{key}') are not supported by this server")


def serialize_bytes(data: np.ndarray) -> bytes:
    """Triton's BYTES wire form of ``data`` (row-major); ``str`` elements are UTF-8 encoded."""
    parts: list[bytes] = []
    for item in data.reshape(-1).tolist():
        b = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def deserialize_bytes(buf: bytes | memoryview, count: int, where: str) -> np.ndarray:
    """Parse ``count`` length-prefixed elements that must fill ``buf`` exactly; a flat object array.
    ``count`` is checked against the bytes present (4 at least per element) before anything is allocated."""
    view = memoryview(buf)
    size = len(view)
    if count * 4 > size:
        raise InvalidInput(
            f"{where}: BYTES shape declares {count} elements, but the {size} bytes of data hold at most "
            f"{size // 4} (each element needs a 4-byte length)"
        )
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > size:
            raise InvalidInput(
                f"{where}: BYTES data ends after {i} of {count} elements (each needs a 4-byte length)"
            )
        (n,) = _LEN.unpack_from(view, offset)
        offset += 4
        if offset + n > size:
            raise InvalidInput(
                f"{where}: BYTES element {i} declares {n} bytes but only {size - offset} remain"
            )
        out[i] = bytes(view[offset : offset + n])
        offset += n
    if offset != size:
        raise InvalidInput(
            f"{where}: BYTES data has {size - offset} bytes left over after the {count} elements of its shape"
        )
    return out


def tensor_from_buffer(
    name: str,
    datatype: Datatype,
    shape: tuple[int, ...],
    buf: bytes | memoryview,
    where: str,
    parameters: dict[str, Any] | None = None,
    budget: ElementBudget | None = None,
) -> Tensor:
    """A tensor from its raw little-endian bytes (HTTP binary extension, gRPC raw contents)."""
    count = (budget or ElementBudget()).take(shape, where)
    if datatype is Datatype.BYTES:
        data = deserialize_bytes(buf, count, where)
    else:
        expected = count * datatype.itemsize
        if len(buf) != expected:
            raise InvalidInput(
                f"{where}: raw data has {len(buf)} bytes, but shape {list(shape)} of {datatype.value} "
                f"needs {expected}"
            )
        data = np.frombuffer(buf, dtype=_LITTLE_ENDIAN[datatype])
    return Tensor(name, datatype, shape, data.reshape(shape), parameters or {})


def tensor_to_buffer(tensor: Tensor) -> bytes:
    """The raw little-endian bytes of ``tensor`` (BYTES length-prefixed)."""
    if tensor.datatype is Datatype.BYTES:
        return serialize_bytes(np.asarray(tensor.data, dtype=object))
    return np.ascontiguousarray(tensor.data, dtype=_LITTLE_ENDIAN[tensor.datatype]).tobytes()
