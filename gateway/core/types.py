"""Tensor, request and response types shared by every protocol adapter and backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class Datatype(StrEnum):
    """KServe v2 / Triton tensor datatypes."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @property
    def numpy(self) -> np.dtype[Any]:
        return _TO_NUMPY[self]

    @property
    def itemsize(self) -> int:
        """Bytes per element; 0 for BYTES (variable length)."""
        return 0 if self is Datatype.BYTES else _TO_NUMPY[self].itemsize

    @classmethod
    def parse(cls, value: str) -> Datatype:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"unknown datatype {value!r}; expected one of {[d.value for d in cls]}"
            ) from None

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Datatype:
        dt = np.dtype(dtype)
        if dt.kind in ("O", "S", "U"):
            return cls.BYTES
        for k, v in _TO_NUMPY.items():
            if v == dt:
                return k
        raise ValueError(f"numpy dtype {dt} has no KServe v2 datatype")


_TO_NUMPY: dict[Datatype, np.dtype[Any]] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype(np.uint8),
    Datatype.UINT16: np.dtype(np.uint16),
    Datatype.UINT32: np.dtype(np.uint32),
    Datatype.UINT64: np.dtype(np.uint64),
    Datatype.INT8: np.dtype(np.int8),
    Datatype.INT16: np.dtype(np.int16),
    Datatype.INT32: np.dtype(np.int32),
    Datatype.INT64: np.dtype(np.int64),
    Datatype.FP16: np.dtype(np.float16),
    Datatype.FP32: np.dtype(np.float32),
    Datatype.FP64: np.dtype(np.float64),
    Datatype.BYTES: np.dtype(object),
}


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named tensor. ``data`` has shape ``shape``; BYTES tensors are object arrays of ``bytes``."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary_data: bool | None = None  # HTTP only: return as binary (None = protocol default)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferRequest:
    model_name: str  # a logical model ("minilm") or a variant ("minilm.int8")
    inputs: list[Tensor]
    model_version: str = ""  # "" = the policy's choice / latest
    id: str = ""
    outputs: list[RequestedOutput] | None = None  # None = every output
    parameters: dict[str, Any] = field(default_factory=dict)  # incl. priority, timeout, slo_ms
    protocol: str = "http"  # "http" or "grpc", for metrics
    deadline_s: float | None = None  # time.monotonic() when the client stops waiting (a gRPC deadline)


@dataclass(frozen=True, slots=True)
class InferResponse:
    model_name: str  # the variant that served the request, e.g. "minilm.int8"
    model_version: str
    outputs: list[Tensor]
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)  # incl. "varigate_variant"
