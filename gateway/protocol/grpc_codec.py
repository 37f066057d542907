"""Triton's gRPC messages (the compiled stubs shipped in ``tritonclient``) to and from core types.

Inputs arrive either as typed ``contents`` or as ``raw_input_contents`` (one entry per input, in order),
never both. Outputs always go back as ``raw_output_contents``, which is what ``tritonclient.grpc``
reads first (``InferResult.as_numpy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from gateway.core import api
from gateway.core.errors import InvalidInput, Unsupported
from gateway.core.types import Datatype, InferRequest, InferResponse, RequestedOutput, Tensor
from gateway.protocol.codec import (
    DEFAULT_LIMITS,
    WIRE_TENSOR_PARAMETERS,
    ElementBudget,
    RequestLimits,
    parse_datatype,
    parse_shape,
    reject_shared_memory,
    tensor_from_buffer,
    tensor_to_buffer,
)

_CONTENTS_FIELD: dict[Datatype, str] = {
    Datatype.BOOL: "bool_contents",
    Datatype.INT8: "int_contents",
    Datatype.INT16: "int_contents",
    Datatype.INT32: "int_contents",
    Datatype.INT64: "int64_contents",
    Datatype.UINT8: "uint_contents",
    Datatype.UINT16: "uint_contents",
    Datatype.UINT32: "uint_contents",
    Datatype.UINT64: "uint64_contents",
    Datatype.FP32: "fp32_contents",
    Datatype.FP64: "fp64_contents",
    Datatype.BYTES: "bytes_contents",
}
_INT64_MAX = 2**63 - 1


def parameters_from_pb(params: Any) -> dict[str, Any]:
    """An ``InferParameter`` / ``ModelRepositoryParameter`` map as plain Python values."""
    out: dict[str, Any] = {}
    if not params:  # most messages carry none; iterating a protobuf map goes through ItemsView
        return out
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out


def parameters_to_pb(values: dict[str, Any], target: Any) -> None:
    for key, value in values.items():
        if isinstance(value, np.generic):
            value = value.item()
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            if value > _INT64_MAX:
                param.uint64_param = value
            else:
                param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        elif isinstance(value, str):
            param.string_param = value
        else:
            param.string_param = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _from_contents(
    inp: Any, datatype: Datatype, shape: tuple[int, ...], where: str, budget: ElementBudget
) -> np.ndarray:
    expected = _CONTENTS_FIELD.get(datatype)
    if expected is None:
        raise InvalidInput(
            f"{where}: {datatype.value} has no typed contents field; send it in raw_input_contents"
        )
    present = [f.name for f, _ in inp.contents.ListFields()]
    wrong = [name for name in present if name != expected]
    if wrong:
        raise InvalidInput(
            f"{where}: {datatype.value} data goes in contents.{expected}, not contents.{wrong[0]}"
        )
    values = getattr(inp.contents, expected)
    count = budget.take(shape, where)
    if len(values) != count:
        raise InvalidInput(
            f"{where}: contents.{expected} has {len(values)} elements, but shape {list(shape)} needs {count}"
        )
    if datatype is Datatype.BYTES:
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
        return arr.reshape(shape)
    if expected not in ("int_contents", "uint_contents"):
        return np.array(list(values), dtype=datatype.numpy).reshape(shape)
    arr = np.array(list(values), dtype=np.int64)  # int32 / uint32 on the wire, narrower types inside
    if arr.size:
        info = np.iinfo(datatype.numpy)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise InvalidInput(
                f"{where}: value {lo if lo < info.min else hi} is out of range for {datatype.value}"
            )
    return arr.astype(datatype.numpy).reshape(shape)


def decode_infer_request(
    msg: Any, limits: RequestLimits = DEFAULT_LIMITS, deadline_s: float | None = None
) -> InferRequest:
    """The core request; declared shapes are checked against ``limits`` and the data present before
    anything is allocated (see ``gateway.protocol.codec``). ``deadline_s``: ``InferRequest.deadline_s``."""
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries, but the request has {len(msg.inputs)} inputs"
        )
    inputs: list[Tensor] = []
    seen: set[str] = set()
    budget = ElementBudget(limits)
    for i, inp in enumerate(msg.inputs):
        name = inp.name  # each read of a protobuf field makes a new str
        if not name:
            raise InvalidInput(f"inputs[{i}] has no name")
        where = f"input {name[:200]!r}"
        budget.take_input(where)
        if name in seen:
            raise InvalidInput(f"{where} appears more than once")
        seen.add(name)
        datatype = parse_datatype(inp.datatype, where)
        shape = parse_shape(tuple(inp.shape), where, limits)
        params = parameters_from_pb(inp.parameters)
        reject_shared_memory(params, where)
        if raw:
            if inp.HasField("contents"):
                raise InvalidInput(
                    f"{where} sets 'contents' while the request uses raw_input_contents; send one"
                )
            inputs.append(tensor_from_buffer(name, datatype, shape, raw[i], where, params, budget))
        elif inp.HasField("contents"):
            data = _from_contents(inp, datatype, shape, where, budget)
            inputs.append(Tensor(name, datatype, shape, data, params))
        else:
            raise InvalidInput(f"{where} has no 'contents' and the request has no raw_input_contents")
    outputs: list[RequestedOutput] | None = None
    if msg.outputs:
        outputs = []
        for out in msg.outputs:
            where = f"requested output '{out.name}'"
            params = parameters_from_pb(out.parameters)
            reject_shared_memory(params, where)
            if "classification" in params:
                raise Unsupported(f"{where}: the classification extension is not supported by this server")
            outputs.append(
                RequestedOutput(
                    out.name, None, {k: v for k, v in params.items() if k not in WIRE_TENSOR_PARAMETERS}
                )
            )
    return InferRequest(
        model_name=msg.model_name,
        model_version=msg.model_version,
        inputs=inputs,
        id=msg.id,
        outputs=outputs,
        parameters=parameters_from_pb(msg.parameters),
        protocol="grpc",
        deadline_s=deadline_s,
    )


def encode_infer_response(response: InferResponse) -> Any:
    msg = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    parameters_to_pb(response.parameters, msg.parameters)
    for tensor in response.outputs:
        out = msg.outputs.add(name=tensor.name, datatype=tensor.datatype.value, shape=tensor.shape)
        if tensor.parameters:
            kept = {k: v for k, v in tensor.parameters.items() if k not in WIRE_TENSOR_PARAMETERS}
            parameters_to_pb(kept, out.parameters)
    msg.raw_output_contents.extend([tensor_to_buffer(tensor) for tensor in response.outputs])
    return msg


def encode_server_metadata(meta: api.ServerMetadata) -> Any:
    return pb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=list(meta.extensions))


def encode_model_metadata(meta: api.ModelMetadata) -> Any:
    def tensors(items: tuple[api.TensorMeta, ...]) -> list[Any]:
        return [
            pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=list(t.shape))
            for t in items
        ]

    return pb.ModelMetadataResponse(
        name=meta.name,
        versions=list(meta.versions),
        platform=meta.platform,
        inputs=tensors(meta.inputs),
        outputs=tensors(meta.outputs),
    )


def encode_model_config(config: dict[str, Any]) -> Any:
    parsed = json_format.ParseDict(config, mc.ModelConfig(), ignore_unknown_fields=True)
    return pb.ModelConfigResponse(config=parsed)


def _duration(d: api.DurationStat) -> Any:
    return pb.StatisticDuration(count=d.count, ns=d.ns)


def encode_statistics(stats: list[api.ModelStatistics]) -> Any:
    msg = pb.ModelStatisticsResponse()
    for s in stats:
        entry = msg.model_stats.add(
            name=s.name,
            version=s.version,
            last_inference=s.last_inference_ms,
            inference_count=s.inference_count,
            execution_count=s.execution_count,
        )
        inf = entry.inference_stats
        for field in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
            getattr(inf, field).CopyFrom(_duration(getattr(s, field)))
        for b in s.batch_stats:
            entry.batch_stats.add(batch_size=b.batch_size, compute_infer=_duration(b.compute_infer))
    return msg


def encode_repository_index(entries: list[api.RepositoryEntry]) -> Any:
    msg = pb.RepositoryIndexResponse()
    for e in entries:
        msg.models.add(name=e.name, version=e.version, state=e.state, reason=e.reason)
    return msg
