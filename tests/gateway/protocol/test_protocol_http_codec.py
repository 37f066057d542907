from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as th
from tritonclient.http import InferResult

from gateway.core.errors import InvalidInput, Unsupported
from gateway.core.types import Datatype, InferResponse, Tensor
from gateway.protocol.http_codec import (
    HttpInferRequest,
    decode_infer_request,
    encode_infer_response,
    parse_header_length,
)


def _decode(doc: dict[str, Any], binary: bytes = b"") -> HttpInferRequest:
    head = orjson.dumps(doc)
    return decode_infer_request(head + binary, len(head) if binary else None, "m", "")


def _one(datatype: str, shape: list[int], data: object) -> Tensor:
    doc = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    return _decode(doc).request.inputs[0]


def test_nested_and_flat_json_data_decode_alike() -> None:
    nested = _one("INT64", [2, 2], [[1, 2], [3, 4]])
    flat = _one("INT64", [2, 2], [1, 2, 3, 4])
    assert nested.data.dtype == np.int64 and nested.data.shape == (2, 2)
    np.testing.assert_array_equal(nested.data, flat.data)


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("BOOL", [True, False], np.array([True, False])),
        ("UINT8", [0, 255], np.array([0, 255], np.uint8)),
        ("INT8", [-128, 127], np.array([-128, 127], np.int8)),
        ("UINT64", [2**64 - 1, 0], np.array([2**64 - 1, 0], np.uint64)),
        ("FP16", [1.5, 2], np.array([1.5, 2.0], np.float16)),
        ("FP32", [1, 2.5], np.array([1, 2.5], np.float32)),
        ("FP64", [0.1, 2], np.array([0.1, 2.0], np.float64)),
    ],
)
def test_json_datatypes(datatype: str, data: list[Any], expected: np.ndarray) -> None:
    t = _one(datatype, [2], data)
    assert t.datatype == Datatype(datatype) and t.data.dtype == expected.dtype
    np.testing.assert_array_equal(t.data, expected)


def test_json_bytes_are_utf8_strings() -> None:
    t = _one("BYTES", [1, 2], [["héllo", ""]])
    assert t.data.dtype == object and t.data.tolist() == [["héllo".encode(), b""]]


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "needle"),
    [
        ("INT32", [2], [1.5, 2], "not valid INT32"),
        ("BOOL", [1], [1], "not valid BOOL"),
        ("UINT8", [1], [256], "out of range for UINT8"),
        ("UINT8", [1], [-1], "out of range for UINT8"),
        ("FP32", [3], [1, 2], "has 2 elements, but shape [3] needs 3"),
        ("FP32", [2], [[1, 2], [3]], "not a regular array"),
        ("FP32", [1], ["a"], "not valid FP32"),
        ("BYTES", [1], [1], "must hold JSON strings"),
        ("FLOAT", [1], [1], "unknown datatype 'FLOAT'"),
        ("FP32", [-1], [1], "negative dimension"),
        ("FP32", "2", [1, 2], "'shape' must be a list of integers"),
    ],
)
def test_bad_json_tensors_name_the_problem(datatype: str, shape: Any, data: Any, needle: str) -> None:
    # shape and data are Any: the cases are ill-typed on purpose
    with pytest.raises(InvalidInput, match="input 'x'") as e:
        _one(datatype, shape, data)
    assert needle in e.value.message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"inputs": 3}', "needs an 'inputs' list"),
        (b'{"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', "inputs[0] has no 'name'"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}', "neither 'data' nor"),
        (b'{"id": 3, "inputs": []}', "'id' must be a string"),
        (b'{"inputs": [], "parameters": {"binary_data_output": "yes"}}', "binary_data_output must be"),
    ],
)
def test_malformed_requests(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidInput) as e:
        decode_infer_request(body, None, "m", "")
    assert needle in e.value.message


def test_duplicate_input_names_are_refused() -> None:
    x = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}
    with pytest.raises(InvalidInput, match="input 'x' appears more than once"):
        _decode({"inputs": [x, x]})


def test_binary_inputs_as_tritonclient_sends_them() -> None:
    a = th.InferInput("ids", [2, 3], "INT64")
    a.set_data_from_numpy(np.arange(6, dtype=np.int64).reshape(2, 3))
    b = th.InferInput("s", [2], "BYTES")
    b.set_data_from_numpy(np.array([b"\xff\x00z", "é".encode()], dtype=object))
    c = th.InferInput("j", [1], "FP32")
    c.set_data_from_numpy(np.array([0.5], np.float32), binary_data=False)
    outputs = [th.InferRequestedOutput("o1"), th.InferRequestedOutput("o2", binary_data=False)]
    body, json_size = th.InferenceServerClient.generate_request_body(
        [a, b, c], outputs=outputs, request_id="r1", priority=2, timeout=500, parameters={"slo_ms": 5}
    )
    decoded = decode_infer_request(body, json_size, "m", "3")
    r = decoded.request
    assert (r.model_name, r.model_version, r.id, r.protocol) == ("m", "3", "r1", "http")
    assert r.parameters == {"priority": 2, "timeout": 500, "slo_ms": 5}
    assert [(o.name, o.binary_data) for o in r.outputs or []] == [("o1", True), ("o2", False)]
    assert decoded.binary_data_output is False
    ids, s, j = r.inputs
    np.testing.assert_array_equal(ids.data, np.arange(6).reshape(2, 3))
    assert ids.parameters == {}  # binary_data_size is wire format, not a tensor parameter
    assert s.data.tolist() == [b"\xff\x00z", "é".encode()]
    assert j.data.tolist() == [0.5]


def _binary_doc(size: int, datatype: str = "FP32", shape: list[int] | None = None) -> dict[str, Any]:
    params = {"binary_data_size": size}
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape or [2], "parameters": params}]}


def test_binary_size_mismatches_are_named() -> None:
    with pytest.raises(InvalidInput, match="raw data has 4 bytes, but shape \\[2\\] of FP32 needs 8"):
        _decode(_binary_doc(4), b"\0" * 4)
    with pytest.raises(InvalidInput, match="binary_data_size 16 exceeds the 8 bytes"):
        _decode(_binary_doc(16), b"\0" * 8)
    with pytest.raises(InvalidInput, match="4 bytes of binary data after the JSON header belong to no input"):
        _decode(_binary_doc(8), b"\0" * 12)
    with pytest.raises(InvalidInput, match="no Inference-Header-Content-Length header"):
        decode_infer_request(orjson.dumps(_binary_doc(8)), None, "m", "")
    both = _binary_doc(8)
    both["inputs"][0]["data"] = [1, 2]
    with pytest.raises(InvalidInput, match=r"both 'data' and parameters\.binary_data_size"):
        _decode(both, b"\0" * 8)


def test_malformed_binary_bytes_tensor() -> None:
    blob = struct.pack("<I", 10) + b"abc"
    with pytest.raises(InvalidInput, match="BYTES element 0 declares 10 bytes but only 3 remain"):
        _decode(_binary_doc(len(blob), "BYTES", [1]), blob)
    blob = struct.pack("<I", 1) + b"a" + b"zz"
    with pytest.raises(InvalidInput, match="2 bytes left over"):
        _decode(_binary_doc(len(blob), "BYTES", [1]), blob)


def test_header_length_is_checked() -> None:
    assert parse_header_length(None, 10) is None
    assert parse_header_length("4", 10) == 4
    for bad in ("x", "0", "11", "-1"):
        with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
            parse_header_length(bad, 10)


def test_shared_memory_and_classification_are_unsupported() -> None:
    shm = {"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"shared_memory_region": "r"}}
    with pytest.raises(Unsupported, match="shared-memory"):
        _decode({"inputs": [shm]})
    with pytest.raises(Unsupported, match="classification"):
        _decode({"inputs": [], "outputs": [{"name": "o", "parameters": {"classification": 3}}]})


def _response() -> InferResponse:
    return InferResponse(
        "m.int8",
        "1",
        [
            Tensor("f", Datatype.FP32, (2, 2), np.arange(4, dtype=np.float32).reshape(2, 2)),
            Tensor("s", Datatype.BYTES, (2,), np.array([b"ok", b"\xff\xfe"], dtype=object)),
            Tensor("h", Datatype.FP16, (1,), np.array([0.5], np.float16), {"note": "kept"}),
        ],
        "r9",
        {"varigate_variant": "m.int8"},
    )


def test_encoded_response_reads_back_with_tritonclient() -> None:
    request = _decode({"inputs": [], "outputs": [{"name": "f", "parameters": {"binary_data": True}}]}).request
    body, header_length = encode_infer_response(_response(), request, binary_data_output=False)
    result = InferResult.from_response_body(body, header_length=header_length)
    doc = result.get_response()
    assert doc["model_name"] == "m.int8" and doc["id"] == "r9"
    assert doc["parameters"] == {"varigate_variant": "m.int8"}
    by_name = {o["name"]: o for o in doc["outputs"]}
    assert by_name["f"]["parameters"] == {"binary_data_size": 16} and "data" not in by_name["f"]
    # JSON was asked for, but these bytes are not UTF-8: they travel binary, which tritonclient reads.
    assert by_name["s"]["parameters"] == {"binary_data_size": 12}
    assert by_name["h"] == {
        "name": "h",
        "datatype": "FP16",
        "shape": [1],
        "data": [0.5],
        "parameters": {"note": "kept"},
    }
    np.testing.assert_array_equal(result.as_numpy("f"), np.arange(4, dtype=np.float32).reshape(2, 2))
    assert result.as_numpy("s").tolist() == [b"ok", b"\xff\xfe"]
    assert result.as_numpy("h").dtype == np.float16


def test_all_json_response_has_no_header_length() -> None:
    response = InferResponse("m", "1", [Tensor("s", Datatype.BYTES, (1,), np.array([b"hi"], dtype=object))])
    body, header_length = encode_infer_response(response, _decode({"inputs": []}).request, False)
    assert header_length is None
    assert orjson.loads(body)["outputs"] == [{"name": "s", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]


def test_binary_data_output_default_applies_to_unnamed_outputs() -> None:
    request = _decode({"inputs": [], "parameters": {"binary_data_output": True}})
    assert request.request.parameters == {}  # a wire-format switch, not a model parameter
    body, header_length = encode_infer_response(_response(), request.request, request.binary_data_output)
    assert header_length is not None
    head = orjson.loads(body[:header_length])
    assert all("binary_data_size" in o["parameters"] for o in head["outputs"])
    assert len(body) - header_length == 16 + 12 + 2
