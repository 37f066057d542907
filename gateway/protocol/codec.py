"""Wire pieces shared by the HTTP and gRPC codecs: datatypes, shapes, raw tensor buffers and Triton's
BYTES serialisation (each element: 4-byte little-endian length, then the bytes).

Everything here raises :class:`~gateway.core.errors.InvalidInput` with a message naming the tensor and
the bad value; the service then checks the request against the model (names, datatypes, shapes).
"""

from __future__ import annotations

import math
import struct
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


def parse_datatype(value: object, where: str) -> Datatype:
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: 'datatype' must be a string, got {value!r}")
    try:
        return Datatype.parse(value)
    except ValueError as e:
        raise InvalidInput(f"{where}: {e}") from None


def parse_shape(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in value
    ):
        raise InvalidInput(f"{where}: 'shape' must be a list of integers, got {value!r}")
    if any(d < 0 for d in value):
        raise InvalidInput(f"{where}: 'shape' {list(value)} has a negative dimension")
    return tuple(value)


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def reject_shared_memory(parameters: dict[str, Any] | Any, where: str) -> None:
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
    """Parse ``count`` length-prefixed elements that must fill ``buf`` exactly; a flat object array."""
    out = np.empty(count, dtype=object)
    view = memoryview(buf)
    size = len(view)
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
) -> Tensor:
    """A tensor from its raw little-endian bytes (HTTP binary extension, gRPC raw contents)."""
    count = element_count(shape)
    if datatype is Datatype.BYTES:
        data = deserialize_bytes(buf, count, where)
    else:
        expected = count * datatype.itemsize
        if len(buf) != expected:
            raise InvalidInput(
                f"{where}: raw data has {len(buf)} bytes, but shape {list(shape)} of {datatype.value} "
                f"needs {expected}"
            )
        data = np.frombuffer(buf, dtype=datatype.numpy.newbyteorder("<"))
    return Tensor(name, datatype, shape, data.reshape(shape), parameters or {})


def tensor_to_buffer(tensor: Tensor) -> bytes:
    """The raw little-endian bytes of ``tensor`` (BYTES length-prefixed)."""
    if tensor.datatype is Datatype.BYTES:
        return serialize_bytes(np.asarray(tensor.data, dtype=object))
    arr = np.asarray(tensor.data)
    want = tensor.datatype.numpy.newbyteorder("<")
    return np.ascontiguousarray(arr, dtype=want).tobytes()
