"""KServe v2 JSON inference bodies plus Triton's binary tensor data extension, both directions, as
``tritonclient.http`` writes and reads them.

Request: a JSON header, optionally followed by binary tensor data. When binary data follows, the
``Inference-Header-Content-Length`` header gives the JSON's length and each binary input says its size in
``parameters.binary_data_size``; the chunks follow in input order. ``data`` may be nested or flat; BYTES
elements are JSON strings (UTF-8), as in Triton.

Response: each output is JSON ``data`` or binary, chosen by the output's ``parameters.binary_data``, else by
the request's ``parameters.binary_data_output`` (default false). Binary outputs carry
``parameters.binary_data_size`` and the response carries ``Inference-Header-Content-Length``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core.errors import InvalidInput, Unsupported
from gateway.core.types import InferRequest, InferResponse, RequestedOutput, Tensor
from gateway.protocol.codec import (
    DEFAULT_LIMITS,
    WIRE_ONLY_PARAMETERS,
    WIRE_TENSOR_PARAMETERS,
    ElementBudget,
    RequestLimits,
    brief,
    parse_datatype,
    parse_shape,
    reject_shared_memory,
    tensor_from_buffer,
    tensor_to_buffer,
)
from gateway.protocol.http_tensor_data import dumps, json_data, tensor_from_json

HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True, slots=True)
class HttpInferRequest:
    request: InferRequest
    binary_data_output: bool  # the request-level default for outputs that do not say


def parse_header_length(value: str | None, body_size: int) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        raise InvalidInput(f"Inference-Header-Content-Length {brief(value)} is not an integer") from None
    if not 0 < n <= body_size:
        raise InvalidInput(
            f"Inference-Header-Content-Length {n} is outside the {body_size}-byte request body"
        )
    return n


def load_json_object(buf: bytes | memoryview, what: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(buf)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"malformed JSON in {what}: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}: 'parameters' must be a JSON object, got {brief(params)}")
    return params


def _decode_input(
    item: object, index: int, binary: memoryview, offset: int, budget: ElementBudget
) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be a JSON object, got {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}] has no 'name' string")
    where = f"input {name[:200]!r}"
    budget.take_input(where)
    datatype = parse_datatype(item.get("datatype"), where)
    shape = parse_shape(item.get("shape"), where, budget.limits)
    params = _parameters(item, where)
    reject_shared_memory(params, where)
    tensor_params = {k: v for k, v in params.items() if k not in WIRE_TENSOR_PARAMETERS}
    size = params.get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise InvalidInput(f"{where} has neither 'data' nor parameters.binary_data_size")
        data = tensor_from_json(name, datatype, shape, item["data"], where, budget)
        return Tensor(name, datatype, shape, data, tensor_params), offset
    if "data" in item:
        raise InvalidInput(f"{where} has both 'data' and parameters.binary_data_size; send one")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer, got {brief(size)}")
    left = len(binary) - offset
    if size > left:
        hint = "" if len(binary) else " (no Inference-Header-Content-Length header, so no binary data)"
        raise InvalidInput(
            f"{where}: binary_data_size {size} exceeds the {left} bytes of binary data left{hint}"
        )
    chunk = binary[offset : offset + size]
    tensor = tensor_from_buffer(name, datatype, shape, chunk, where, tensor_params, budget)
    return tensor, offset + size


def _decode_output(item: object, index: int) -> RequestedOutput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidInput(f"outputs[{index}] must be a JSON object with a 'name' string, got {brief(item)}")
    name = item["name"]
    where = f"requested output '{name}'"
    params = _parameters(item, where)
    reject_shared_memory(params, where)
    if "classification" in params:
        raise Unsupported(f"{where}: the classification extension is not supported by this server")
    binary = params.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise InvalidInput(f"{where}: parameters.binary_data must be true or false, got {brief(binary)}")
    rest = {k: v for k, v in params.items() if k not in WIRE_TENSOR_PARAMETERS}
    return RequestedOutput(name, binary, rest)


def decode_infer_request(
    body: bytes,
    header_length: int | None,
    model_name: str,
    model_version: str,
    limits: RequestLimits = DEFAULT_LIMITS,
) -> HttpInferRequest:
    view = memoryview(body)
    head_end = len(view) if header_length is None else header_length
    obj = load_json_object(view[:head_end], "the inference request")
    binary = view[head_end:]
    request_id = obj.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidInput(f"request 'id' must be a string, got {brief(request_id)}")
    params = _parameters(obj, "request")
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidInput(f"parameters.binary_data_output must be true or false, got {brief(binary_output)}")
    raw_inputs = obj.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InvalidInput(f"the inference request needs an 'inputs' list, got {brief(raw_inputs)}")
    inputs: list[Tensor] = []
    seen: set[str] = set()
    offset = 0
    budget = ElementBudget(limits)
    for i, item in enumerate(raw_inputs):
        tensor, offset = _decode_input(item, i, binary, offset, budget)
        if tensor.name in seen:
            raise InvalidInput(f"input '{tensor.name}' appears more than once")
        seen.add(tensor.name)
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} bytes of binary data after the JSON header belong to no input's "
            "binary_data_size"
        )
    raw_outputs = obj.get("outputs")
    outputs: list[RequestedOutput] | None = None
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput(f"'outputs' must be a list, got {brief(raw_outputs)}")
        outputs = [_decode_output(item, i) for i, item in enumerate(raw_outputs)]
    request = InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=inputs,
        id=request_id,
        outputs=outputs,
        parameters={k: v for k, v in params.items() if k not in WIRE_ONLY_PARAMETERS},
        protocol="http",
    )
    return HttpInferRequest(request, binary_output)


def encode_infer_response(
    response: InferResponse, request: InferRequest, binary_data_output: bool
) -> tuple[bytes, int | None]:
    """The response body and, when binary outputs follow the JSON, the JSON's length for
    ``Inference-Header-Content-Length``. BYTES outputs that are not UTF-8 go binary even when JSON was
    asked for, since JSON strings cannot carry them (tritonclient reads either form)."""
    wanted = {o.name: o.binary_data for o in request.outputs or ()}
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in response.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype.value,
            "shape": list(tensor.shape),
        }
        params = {k: v for k, v in tensor.parameters.items() if k not in WIRE_TENSOR_PARAMETERS}
        choice = wanted.get(tensor.name)
        binary = binary_data_output if choice is None else choice
        data = None if binary else json_data(tensor)
        if data is None:
            blob = tensor_to_buffer(tensor)
            blobs.append(blob)
            params["binary_data_size"] = len(blob)
        else:
            entry["data"] = data
        if params:
            entry["parameters"] = params
        entries.append(entry)
    head: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        head["id"] = response.id
    if response.parameters:
        head["parameters"] = response.parameters
    head["outputs"] = entries
    header = dumps(head)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
