"""The request path's fast paths must answer exactly as the slow ones did: datatypes and shapes parsed from
the wire (lists, tuples, protobuf repeated fields; bools and strings refused), raw buffers in and out for
every datatype and byte order, gRPC responses (shapes, tensor parameters, raw contents in output order, the
client's deadline carried), and validation's messages for a bad shape, an empty axis and a missing input."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from gateway.core.config import ModelConfig, TensorConfig
from gateway.core.errors import InvalidInput
from gateway.core.types import Datatype, InferRequest, InferResponse, Tensor
from gateway.core.validation import validate
from gateway.protocol.codec import parse_datatype, parse_shape, tensor_from_buffer, tensor_to_buffer
from gateway.protocol.grpc_codec import decode_infer_request, encode_infer_response

NUMERIC = [d for d in Datatype if d is not Datatype.BYTES]


def test_datatypes_and_shapes_from_the_wire() -> None:
    assert [parse_datatype(d.value, "x") for d in Datatype] == list(Datatype)
    with pytest.raises(InvalidInput, match=r"x: unknown datatype 'FP8'"):
        parse_datatype("FP8", "x")
    with pytest.raises(InvalidInput, match="x: 'datatype' must be a string, got 3"):
        parse_datatype(3, "x")
    repeated = pb.ModelInferRequest.InferInputTensor(shape=[2, 3]).shape
    assert parse_shape([2, 3], "x") == parse_shape((2, 3), "x") == parse_shape(repeated, "x") == (2, 3)
    for bad, why in (
        ([2, True], "list of integers"),
        ("23", "list of integers, got str"),
        ([-1], "negative"),
    ):
        with pytest.raises(InvalidInput, match=why):
            parse_shape(bad, "x")


@pytest.mark.parametrize("datatype", NUMERIC)
def test_raw_buffers_round_trip_little_endian(datatype: Datatype) -> None:
    values = np.arange(6).reshape(2, 3).astype(datatype.numpy)
    wire = values.astype(datatype.numpy.newbyteorder("<")).tobytes()
    assert tensor_to_buffer(Tensor("t", datatype, (2, 3), values)) == wire
    swapped = values.astype(datatype.numpy.newbyteorder(">"))
    assert tensor_to_buffer(Tensor("t", datatype, (2, 3), swapped)) == wire
    assert (
        tensor_to_buffer(Tensor("t", datatype, (3, 2), values.T))
        == values.T.copy().astype("<" + values.dtype.str[1:]).tobytes()
    )
    back = tensor_from_buffer("t", datatype, (2, 3), wire, "t")
    np.testing.assert_array_equal(back.data, values)
    assert back.shape == (2, 3) and back.parameters == {}


def test_grpc_response_and_request_carry_everything() -> None:
    embedding = np.arange(4, dtype=np.float32).reshape(2, 2)
    ids = np.array([[7, 8, 9]], dtype=np.int64)
    response = InferResponse(
        "m.a",
        "1",
        [
            Tensor("embedding", Datatype.FP32, (2, 2), embedding, {"binary_data_size": 16, "unit": "x"}),
            Tensor("ids", Datatype.INT64, (1, 3), ids),
        ],
        id="r-1",
        parameters={"varigate_variant": "m.a", "varigate_slo_met": True},
    )
    msg = encode_infer_response(response)
    assert [(o.name, o.datatype, list(o.shape)) for o in msg.outputs] == [
        ("embedding", "FP32", [2, 2]),
        ("ids", "INT64", [1, 3]),
    ]
    assert dict(msg.outputs[0].parameters) == {"unit": pb.InferParameter(string_param="x")}
    assert not msg.outputs[1].parameters
    assert list(msg.raw_output_contents) == [embedding.tobytes(), ids.tobytes()]
    assert msg.parameters["varigate_slo_met"].bool_param is True and msg.id == "r-1"
    request = pb.ModelInferRequest(model_name="m", id="q")
    request.inputs.add(name="ids", datatype="INT64", shape=[1, 3])
    request.raw_input_contents.append(ids.tobytes())
    decoded = decode_infer_request(request, deadline_s=12.5)
    assert decoded.deadline_s == 12.5 and decoded.protocol == "grpc" and decoded.parameters == {}
    assert decode_infer_request(request).deadline_s is None
    np.testing.assert_array_equal(decoded.inputs[0].data, ids)


def _config() -> ModelConfig:
    inputs = (TensorConfig("ids", Datatype.INT64, (-1,)), TensorConfig("mask", Datatype.INT64, (-1,)))
    return ModelConfig("m", "onnxruntime_onnx", 4, inputs, (TensorConfig("out", Datatype.FP32, (2,)),))


def _request(*shapes: tuple[int, ...]) -> InferRequest:
    names = ("ids", "mask")
    tensors = [
        Tensor(n, Datatype.INT64, s, np.ones(s, dtype=np.int64)) for n, s in zip(names, shapes, strict=False)
    ]
    return InferRequest("m", tensors)


def test_validation_messages_are_unchanged() -> None:
    valid = validate(_request((2, 3), (2, 3)), _config())
    assert valid.rows == 2 and valid.outputs == ("out",) and list(valid.feeds) == ["ids", "mask"]
    cases = {
        "expected shape \\[-1, -1\\], got \\[2, 3, 1\\]": _request((2, 3, 1), (2, 3)),
        "expected shape \\[-1, -1\\], got \\[2\\]": _request((2,), (2, 3)),
        "shape \\[2, 0\\] has size 0 in variable dimension 1": _request((2, 0), (2, 0)),
        "expected 2 inputs but got 1 inputs for model 'm'; missing \\['mask'\\]": _request((2, 3)),
    }
    for message, request in cases.items():
        with pytest.raises(InvalidInput, match=message):
            validate(request, _config())
