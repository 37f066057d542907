"""The load tester types gRPC request parameters itself, as tritonclient's gRPC client does, and the gateway
reads them back: a real stream to a real gateway carries every type, and an unsupported value is refused
before anything is sent."""

from __future__ import annotations

import pytest
from tritonclient.grpc import service_pb2 as pb

from loadtest.grpc_stream import set_parameters


def test_each_python_type_lands_in_its_protobuf_field() -> None:
    request = pb.ModelInferRequest()
    set_parameters(request.parameters, {"s": "x", "b": True, "i": 7, "f": 0.5, "big": 2**40})
    fields = {k: v.WhichOneof("parameter_choice") for k, v in request.parameters.items()}
    assert fields == {
        "s": "string_param",
        "b": "bool_param",  # bool before int: True is an int in Python
        "i": "int64_param",
        "f": "double_param",
        "big": "int64_param",
    }
    assert request.parameters["s"].string_param == "x" and request.parameters["b"].bool_param is True
    assert request.parameters["i"].int64_param == 7 and request.parameters["f"].double_param == 0.5


def test_an_unsupported_value_names_the_key_and_its_type() -> None:
    request = pb.ModelInferRequest()
    with pytest.raises(TypeError, match=r"request parameter 'tags': list is not str, bool, int or float"):
        set_parameters(request.parameters, {"ok": 1, "tags": ["a"]})
