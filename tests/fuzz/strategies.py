"""Hypothesis strategies for inference requests aimed at the tiny repository, shared by the HTTP and gRPC fuzz
tests: names and datatypes right, near misses and wrong; shapes small, huge, negative and many-dimensional;
data that fits its shape or not; raw bytes that tell the truth or lie. Each protocol test encodes a
``FuzzRequest`` in its own wire form."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from gateway.core.types import Datatype
from tests.fixtures.tinyrepo import VOCAB_SIZE
from tests.fuzz.conftest import MODELS, UNKNOWN_MODELS

INPUT_NAMES = ("input_ids", "attention_mask", "x", "text", "nope", "input_ids ")
DATATYPES = tuple(d.value for d in Datatype)
BAD_DATATYPES = ("FP8", "BF16", "int64", "STRING", "", "INT64\x00", "FP32 ")
HUGE_DIMS = (2**31, 2**32, 2**40, 10**12, 2**62, 2**63 - 1)  # 2**63 - 1: the largest an int64 dim holds
NEGATIVE_DIMS = (-1, -2, -(2**63))
_MAX_ELEMENTS = 64  # data that fits its shape is generated only for shapes this small


@dataclass(frozen=True, slots=True)
class FuzzInput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: tuple[Any, ...]  # flat; as many as the shape needs, or not
    raw: bytes  # the values' raw little-endian form (BYTES: 4-byte lengths), possibly cut, padded or lying


@dataclass(frozen=True, slots=True)
class FuzzRequest:
    model: str
    inputs: tuple[FuzzInput, ...]
    parameters: dict[str, Any]
    outputs: tuple[str, ...]


def _dims(*, negative: bool) -> st.SearchStrategy[int]:
    options = [st.integers(0, 4), st.integers(0, 4), st.sampled_from(HUGE_DIMS)]
    if negative:
        options.append(st.sampled_from(NEGATIVE_DIMS))
    return st.one_of(options)


def shapes(*, negative: bool = True) -> st.SearchStrategy[tuple[int, ...]]:
    """Mostly 0-4 small or huge dims; sometimes hundreds of dims (numpy holds at most 64)."""
    few = st.lists(_dims(negative=negative), max_size=4)
    many = st.integers(65, 300).map(lambda n: [1] * n)
    return st.one_of(few, few, few, many).map(tuple)


def _values(datatype: str, count: int) -> st.SearchStrategy[list[Any]]:
    ids = st.integers(0, VOCAB_SIZE - 1)  # in the vocabulary: out-of-range ids are a backend failure
    element: st.SearchStrategy[Any] = {
        "BOOL": st.booleans(),
        "BYTES": st.text(max_size=6),
        "FP16": st.floats(-1e3, 1e3, width=16),
        "FP32": st.floats(-1e6, 1e6, width=32),
        "FP64": st.floats(allow_nan=False, allow_infinity=False),
        "INT8": st.one_of(ids, st.integers(-300, 300)),
        "UINT8": st.one_of(ids, st.integers(-10, 300)),
    }.get(datatype, ids)
    return st.lists(element, min_size=count, max_size=count)


def raw_bytes(datatype: str, values: list[Any]) -> bytes:
    """The raw wire form of ``values`` as ``datatype`` (an unknown datatype: 4 bytes per value)."""
    if datatype == "BYTES":
        parts = [str(v).encode() for v in values]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)
    try:
        dtype = Datatype(datatype).numpy
    except ValueError:
        return b"\x00\x00\x00\x00" * len(values)
    return (
        np.array(values, dtype=np.float64).astype(dtype, copy=False).astype(dtype.newbyteorder("<")).tobytes()
    )


@st.composite
def fuzz_inputs(draw: st.DrawFn, name: str | None = None, datatype: str | None = None) -> FuzzInput:
    name = name if name is not None else draw(st.sampled_from(INPUT_NAMES))
    if datatype is None:
        datatype = draw(st.one_of(st.sampled_from(DATATYPES), st.sampled_from(BAD_DATATYPES)))
    shape = draw(shapes())
    needed = math.prod(shape) if min(shape, default=0) >= 0 else -1
    fits = 0 <= needed <= _MAX_ELEMENTS and draw(st.integers(0, 9)) < 8
    values = draw(_values(datatype, needed if fits else draw(st.integers(0, 4))))
    raw = raw_bytes(datatype, values)
    lie = draw(st.sampled_from(("none", "none", "none", "cut", "pad", "length")))
    if lie == "cut" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif lie == "pad":
        raw += draw(st.binary(min_size=1, max_size=8))
    elif lie == "length":  # a BYTES-style length prefix that claims more than there is
        raw = struct.pack("<I", draw(st.sampled_from((5, 2**16, 2**31, 2**32 - 1)))) + raw[4:]
    return FuzzInput(name, datatype, shape, tuple(values), raw)


@st.composite
def tiny_request(draw: st.DrawFn) -> FuzzRequest:
    """A well-formed request for ``tiny`` whose two inputs' dims may disagree (rows, sequence length)."""
    rows, length = draw(st.integers(0, 3)), draw(st.integers(0, 5))
    mask_rows = draw(st.sampled_from((rows, rows, rows + 1)))
    mask_length = draw(st.sampled_from((length, length, max(0, length - 1), length + 1)))
    inputs = []
    for name, (r, n) in (("input_ids", (rows, length)), ("attention_mask", (mask_rows, mask_length))):
        values = draw(_values("INT64", r * n))
        inputs.append(FuzzInput(name, "INT64", (r, n), tuple(values), raw_bytes("INT64", values)))
    model = draw(st.sampled_from(("tiny", "tiny.fp32", "tiny.int8")))
    return FuzzRequest(model, tuple(inputs), {}, ())


def _parameters() -> st.SearchStrategy[dict[str, Any]]:
    value = st.one_of(
        st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False), st.text(max_size=8)
    )
    keys = st.sampled_from(("priority", "timeout", "slo_ms", "max_accuracy_loss", "binary_data_output", "x"))
    return st.dictionaries(keys, value, max_size=3)


@st.composite
def fuzz_requests(draw: st.DrawFn) -> FuzzRequest:
    """Mostly the repository's models and their inputs, mixed with unknown names and hostile tensors."""
    if draw(st.integers(0, 3)) == 0:
        return draw(tiny_request())
    model = draw(st.sampled_from(MODELS + UNKNOWN_MODELS))
    inputs = draw(st.lists(fuzz_inputs(), max_size=3, unique_by=lambda i: i.name))
    outputs = draw(st.lists(st.sampled_from(("embedding", "probs", "echo", "nope")), max_size=2))
    return FuzzRequest(model, tuple(inputs), draw(_parameters()), tuple(outputs))
