from __future__ import annotations

import re
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import InferResult
from tritonclient.grpc import service_pb2 as pb

from gateway.core.errors import InvalidInput, Unsupported
from gateway.core.types import Datatype, InferResponse, Tensor
from gateway.protocol.codec import RequestLimits
from gateway.protocol.grpc_codec import (
    decode_infer_request,
    encode_infer_response,
    encode_model_config,
)


def sent_by_tritonclient(send: Callable[[tg.InferenceServerClient], object]) -> bytes:
    """The bytes of the one ``ModelInfer`` request ``send`` makes through tritonclient's own client, as a
    real gRPC server on a free loopback port receives them (it answers with an empty response)."""
    received: list[bytes] = []
    answer: bytes = pb.ModelInferResponse(model_name="m").SerializeToString()

    def model_infer(request: bytes, context: grpc.ServicerContext) -> bytes:
        received.append(request)
        return answer

    # no (de)serializers: the handler sees the request's bytes
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(model_infer)
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelInfer": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = tg.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        send(client)
    finally:
        client.close()
        server.stop(grace=None)
    assert len(received) == 1
    return received[0]


def test_raw_inputs_as_tritonclient_sends_them() -> None:
    a = tg.InferInput("ids", [2, 3], "INT64")
    a.set_data_from_numpy(np.arange(6, dtype=np.int64).reshape(2, 3))
    b = tg.InferInput("s", [2], "BYTES")
    b.set_data_from_numpy(np.array([b"\xff", b""], dtype=object))
    c = tg.InferInput("h", [1], "FP16")
    c.set_data_from_numpy(np.array([0.25], np.float16))
    sent = sent_by_tritonclient(
        lambda client: client.infer(
            "m",
            [a, b, c],
            model_version="2",
            request_id="r1",
            outputs=[tg.InferRequestedOutput("o")],
            priority=3,
            timeout=900,
            parameters={"slo_ms": 4.5, "tag": "x"},
        )
    )
    r = decode_infer_request(pb.ModelInferRequest.FromString(sent))
    assert (r.model_name, r.model_version, r.id, r.protocol) == ("m", "2", "r1", "grpc")
    assert r.parameters == {"priority": 3, "timeout": 900, "slo_ms": 4.5, "tag": "x"}
    assert [o.name for o in r.outputs or []] == ["o"]
    ids, s, h = r.inputs
    np.testing.assert_array_equal(ids.data, np.arange(6).reshape(2, 3))
    assert s.data.tolist() == [b"\xff", b""]
    assert h.data.dtype == np.float16 and h.data.tolist() == [0.25]


def test_typed_contents() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="i8", datatype="INT8", shape=[3]).contents.int_contents.extend([1, -2, 3])
    msg.inputs.add(name="u16", datatype="UINT16", shape=[1]).contents.uint_contents.extend([65535])
    msg.inputs.add(name="f", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend([1.5, 2])
    msg.inputs.add(name="b", datatype="BOOL", shape=[2]).contents.bool_contents.extend([True, False])
    msg.inputs.add(name="s", datatype="BYTES", shape=[1]).contents.bytes_contents.extend([b"ab"])
    got = {t.name: t.data for t in decode_infer_request(msg).inputs}
    assert got["i8"].dtype == np.int8 and got["i8"].tolist() == [1, -2, 3]
    assert got["u16"].dtype == np.uint16 and got["u16"].tolist() == [65535]
    assert got["f"].dtype == np.float32 and got["f"].shape == (1, 2)
    assert got["b"].tolist() == [True, False]
    assert got["s"].tolist() == [b"ab"]


def _typed(datatype: str, field: str, values: list[Any], shape: list[int] | None = None) -> Any:
    msg = pb.ModelInferRequest(model_name="m")
    getattr(msg.inputs.add(name="x", datatype=datatype, shape=shape or [len(values)]).contents, field).extend(
        values
    )
    return msg


@pytest.mark.parametrize(
    ("msg", "needle"),
    [
        (_typed("INT8", "int_contents", [300]), "value 300 is out of range for INT8"),
        (
            _typed("INT64", "fp32_contents", [1.0]),
            "INT64 data goes in contents.int64_contents, not contents.fp32_contents",
        ),
        (_typed("FP16", "fp32_contents", [1.0]), "FP16 has no typed contents field"),
        (_typed("FP32", "fp32_contents", [1.0], [2]), "has 1 elements, but shape [2] needs 2"),
        (_typed("FLOAT", "fp32_contents", [1.0]), "unknown datatype 'FLOAT'"),
        (_typed("FP32", "fp32_contents", [1.0], [-1]), "negative dimension"),
    ],
)
def test_bad_typed_contents_name_the_problem(msg: Any, needle: str) -> None:
    with pytest.raises(InvalidInput, match="input 'x'") as e:
        decode_infer_request(msg)
    assert needle in e.value.message


def test_raw_contents_rules() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[2])
    msg.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(InvalidInput, match="raw data has 4 bytes, but shape \\[2\\] of FP32 needs 8"):
        decode_infer_request(msg)
    msg.raw_input_contents[0] = b"\0" * 8
    msg.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidInput, match="sets 'contents' while the request uses raw_input_contents"):
        decode_infer_request(msg)
    msg.inputs[0].ClearField("contents")
    msg.raw_input_contents.append(b"")
    with pytest.raises(InvalidInput, match="raw_input_contents has 2 entries, but the request has 1 inputs"):
        decode_infer_request(msg)
    empty = pb.ModelInferRequest(model_name="m")
    empty.inputs.add(name="x", datatype="FP32", shape=[1])
    with pytest.raises(InvalidInput, match="has no 'contents' and the request has no raw_input_contents"):
        decode_infer_request(empty)


def test_raw_bytes_tensor_must_match_its_shape() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="BYTES", shape=[2])
    msg.raw_input_contents.append(struct.pack("<I", 1) + b"a")
    with pytest.raises(InvalidInput, match="declares 2 elements, but the 5 bytes of data hold at most 1"):
        decode_infer_request(msg)
    del msg.raw_input_contents[:]
    msg.raw_input_contents.append(struct.pack("<I", 1) + b"abcd")
    with pytest.raises(InvalidInput, match="BYTES data ends after 1 of 2 elements"):
        decode_infer_request(msg)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("BYTES", [2**40], struct.pack("<I", 0), "over the limit of 256 elements"),
        (
            "BYTES",
            [100],
            struct.pack("<I", 0),
            "declares 100 elements, but the 4 bytes of data hold at most 1",
        ),
        ("FP32", [200, 200], b"\0" * 8, "takes the request over its limit of 256 elements"),
        ("FP32", [2**31, 2**31], b"\0" * 8, "over the limit of 256 elements"),
        ("INT64", [2**63 - 1], b"", "over the limit of 256 elements"),
        ("INT64", [0, 2**62], b"", "over the limit of 256 elements"),
        ("INT64", [1] * 17, b"\0" * 8, "17 dimensions, more than the limit of 16"),
        ("INT64", [-1], b"", "negative dimension"),
    ],
)
def test_declared_shapes_are_bounded_before_anything_is_allocated(
    datatype: str, shape: list[int], data: bytes, message: str
) -> None:
    limits = RequestLimits(max_elements=256)
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype=datatype, shape=shape)
    msg.raw_input_contents.append(data)
    with pytest.raises(InvalidInput, match=f"input 'x'.*{re.escape(message)}"):
        decode_infer_request(msg, limits)
    typed = pb.ModelInferRequest(model_name="m")
    typed.inputs.add(name="x", datatype="INT64", shape=[100, 100]).contents.int64_contents.append(1)
    with pytest.raises(InvalidInput, match=r"input 'x'.*takes the request over its limit of 256"):
        decode_infer_request(typed, limits)


def test_element_limit_covers_the_whole_request() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    for name in ("a", "b"):
        msg.inputs.add(name=name, datatype="INT64", shape=[20])
        msg.raw_input_contents.append(b"\0" * 160)
    decode_infer_request(msg, RequestLimits(max_elements=40))
    with pytest.raises(
        InvalidInput,
        match=r"input 'b': shape \[20\] takes the request over its limit of 39 elements \(20 used",
    ):
        decode_infer_request(msg, RequestLimits(max_elements=39))
    with pytest.raises(InvalidInput, match="more than 1 inputs"):
        decode_infer_request(msg, RequestLimits(max_inputs=1))


def test_shared_memory_and_classification_are_unsupported() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[1]).parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(Unsupported, match="shared-memory"):
        decode_infer_request(msg)
    msg = pb.ModelInferRequest(model_name="m")
    msg.outputs.add(name="o").parameters["classification"].int64_param = 2
    with pytest.raises(Unsupported, match="classification"):
        decode_infer_request(msg)


def test_response_reads_back_with_tritonclient() -> None:
    response = InferResponse(
        "m.int8",
        "1",
        [
            Tensor("f", Datatype.FP32, (2, 2), np.arange(4, dtype=np.float32).reshape(2, 2)),
            Tensor("s", Datatype.BYTES, (2,), np.array([b"x", b"\xff"], dtype=object)),
        ],
        "r1",
        {"varigate_variant": "m.int8", "n": 3, "big": 2**63, "f": 0.5, "ok": True, "doc": {"a": 1}},
    )
    msg = encode_infer_response(response)
    assert len(msg.raw_output_contents) == 2  # tritonclient reads raw_output_contents by output index
    result = InferResult(pb.ModelInferResponse.FromString(msg.SerializeToString()))
    np.testing.assert_array_equal(result.as_numpy("f"), np.arange(4, dtype=np.float32).reshape(2, 2))
    assert result.as_numpy("s").tolist() == [b"x", b"\xff"]
    p = result.get_response().parameters
    assert p["varigate_variant"].string_param == "m.int8"
    assert p["n"].int64_param == 3 and p["big"].uint64_param == 2**63
    assert p["f"].double_param == 0.5 and p["ok"].bool_param is True
    assert p["doc"].string_param == '{"a":1}'


def test_model_config_json_to_protobuf() -> None:
    config = {
        "name": "m",
        "max_batch_size": 8,
        "input": [{"name": "x", "data_type": "TYPE_INT64", "dims": [-1]}],
        "dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 100},
        "a_field_from_a_newer_triton": 1,
    }
    got = encode_model_config(config).config
    assert got.name == "m" and got.max_batch_size == 8
    assert list(got.input[0].dims) == [-1] and got.input[0].data_type == 9  # TYPE_INT64
    assert list(got.dynamic_batching.preferred_batch_size) == [4, 8]
