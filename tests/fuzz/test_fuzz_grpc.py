"""gRPC inference fuzzed with raw ``service_pb2`` messages through the generated stub (what no client library
would send): the shared request strategies (``tests/fuzz/strategies.py``) as raw contents, typed contents,
both or neither, with parameters of every kind, unary and as ``ModelStreamInfer`` streams. Seeded, bounded.
No INTERNAL or UNKNOWN, every refusal says why, and the gateway stays live with its RSS bounded; then the
hostile messages of the attacker's report, each INVALID_ARGUMENT within 1 s naming the input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.e2e.support import GatewayProcess
from tests.fuzz.strategies import FuzzInput, FuzzRequest, fuzz_requests

UNARY_EXAMPLES, STREAM_EXAMPLES = 1200, 200
ANSWER_BOUND_S, HOSTILE_BOUND_S = 2.0, 1.0
REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED}
_INT64 = (-(2**63), 2**63 - 1)
_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_RANGE = {
    "int_contents": (-(2**31), 2**31 - 1),
    "int64_contents": _INT64,
    "uint_contents": (0, 2**32 - 1),
    "uint64_contents": (0, 2**64 - 1),
}
PARAMETER_VALUES = st.one_of(
    st.booleans(),
    st.integers(*_INT64),
    st.integers(2**63, 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
PARAMETERS = st.dictionaries(
    st.sampled_from(("priority", "timeout", "slo_ms", "max_accuracy_loss", "shared_memory_region", "x")),
    PARAMETER_VALUES,
    max_size=2,
)


def set_parameter(target: Any, key: str, value: Any) -> None:
    param = target[key]
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        if value > _INT64[1]:
            param.uint64_param = value
        else:
            param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    else:
        param.string_param = value


def _typed(field: str, values: tuple[Any, ...]) -> list[Any]:
    if field == "bytes_contents":
        return [str(v).encode() for v in values]
    if field == "bool_contents":
        return [bool(v) for v in values]
    numbers = [v if isinstance(v, (int, float)) else len(v) for v in values]
    if field in _RANGE:
        lo, hi = _RANGE[field]
        return [min(max(int(v), lo), hi) for v in numbers]
    return [float(v) for v in numbers]


def to_message(request: FuzzRequest, mode: str, wrong_field: bool, params: dict[str, Any]) -> Any:
    """``mode``: ``raw``, ``typed``, ``both`` (typed contents and raw) or ``neither``."""
    msg = pb.ModelInferRequest(model_name=request.model, id="fuzz")
    for key, value in {**request.parameters, **params}.items():
        set_parameter(msg.parameters, key, value)
    for t in request.inputs:
        inp = msg.inputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
        if mode in ("typed", "both"):
            field = "fp64_contents" if wrong_field else _FIELD.get(t.datatype, "int_contents")
            getattr(inp.contents, field).extend(_typed(field, t.values))
        if mode in ("raw", "both"):
            msg.raw_input_contents.append(t.raw)
    for name in request.outputs:
        msg.outputs.add(name=name)
    return msg


@pytest.fixture(scope="module")
def stub(fuzz_gateway: GatewayProcess) -> Iterator[Any]:
    with grpc.insecure_channel(fuzz_gateway.grpc) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _infer(stub: Any, msg: Any) -> tuple[grpc.StatusCode, str, Any, float]:
    started = time.monotonic()
    try:
        reply = stub.ModelInfer(msg, timeout=30)
    except grpc.RpcError as e:
        return e.code(), e.details() or "", None, time.monotonic() - started
    return grpc.StatusCode.OK, "", reply, time.monotonic() - started


MESSAGES = st.builds(
    to_message,
    fuzz_requests(),
    st.sampled_from(("raw", "raw", "typed", "typed", "both", "neither")),
    st.integers(0, 9).map(lambda n: n == 0),
    PARAMETERS,
)


def test_fuzz_model_infer(stub: Any, rss_guard: GatewayProcess) -> None:
    counts: dict[str, int] = {}

    @settings(
        max_examples=UNARY_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(msg=MESSAGES)
    def fuzz(msg: Any) -> None:
        code, details, reply, elapsed_s = _infer(stub, msg)
        counts[code.name] = counts.get(code.name, 0) + 1
        assert elapsed_s < ANSWER_BOUND_S, f"{code.name} after {elapsed_s:.2f} s"
        if code is grpc.StatusCode.OK:
            assert len(reply.raw_output_contents) == len(reply.outputs) > 0, reply
        else:
            assert code in REFUSALS, f"{code.name}: {details}"
            assert details.strip(), f"{code.name} without a message"

    fuzz()
    assert counts.get("OK", 0) >= 10 and counts.get("INVALID_ARGUMENT", 0) >= 100, counts


def test_fuzz_stream(stub: Any, rss_guard: GatewayProcess) -> None:
    @settings(
        max_examples=STREAM_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(msgs=st.lists(MESSAGES, min_size=1, max_size=6))
    def fuzz(msgs: list[Any]) -> None:
        for i, msg in enumerate(msgs):
            msg.id = str(i)
        replies = list(stub.ModelStreamInfer(iter(msgs), timeout=30))
        assert sorted(r.infer_response.id for r in replies) == sorted(m.id for m in msgs)  # one answer each
        for r in replies:
            if r.error_message:
                assert not r.error_message.lower().startswith("internal error"), r.error_message
            else:
                assert len(r.infer_response.raw_output_contents) == len(r.infer_response.outputs) > 0, r

    fuzz()
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


def _hostile(
    model: str, name: str, datatype: str, shape: list[int], raw: bytes | None, typed: list[float]
) -> Any:
    request = FuzzRequest(model, (FuzzInput(name, datatype, tuple(shape), tuple(typed), raw or b""),), {}, ())
    return to_message(request, "raw" if raw is not None else "typed", False, {})


HOSTILE = {
    "bytes-2**40-4-raw-bytes": _hostile("text.base", "text", "BYTES", [2**40], b"\x00" * 4, []),
    "bytes-2**26-4-raw-bytes": _hostile("text.base", "text", "BYTES", [2**13, 2**13], b"\x00" * 4, []),
    "bytes-int64-overflow": _hostile("text.base", "text", "BYTES", [2**32, 2**32], b"\x00" * 4, []),
    "fp32-2**31x2**31-8-raw-bytes": _hostile("clf.fp32", "x", "FP32", [2**31, 2**31], b"\x00" * 8, []),
    "typed-10**12": _hostile("clf.fp32", "x", "FP32", [10**12], None, [1.0]),
    "typed-100k-dims": _hostile("clf.fp32", "x", "FP32", [1] * 100_000, None, [1.0]),
    "raw-negative-dim": _hostile("clf.fp32", "x", "FP32", [-1, 4], b"\x00" * 16, []),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_message(case: str, stub: Any, rss_guard: GatewayProcess) -> None:
    msg = HOSTILE[case]
    assert msg.ByteSize() < 400_000
    code, details, _, elapsed_s = _infer(stub, msg)
    assert code is grpc.StatusCode.INVALID_ARGUMENT, f"{code.name}: {details}"
    assert f"'{msg.inputs[0].name}'" in details, details
    assert elapsed_s < HOSTILE_BOUND_S, f"answered in {elapsed_s:.2f} s"
    replies = list(stub.ModelStreamInfer(iter([msg, msg]), timeout=30))  # the same inside a stream
    assert len(replies) == 2 and all(f"'{msg.inputs[0].name}'" in r.error_message for r in replies), replies
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
