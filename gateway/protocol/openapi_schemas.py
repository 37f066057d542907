"""The schemas (``components.schemas``) of the OpenAPI document ``gateway.protocol.openapi`` assembles: the
JSON documents the gateway's REST API reads and answers with, in the shapes Triton's HTTP server uses."""

from __future__ import annotations

from typing import Any

from gateway.core.types import Datatype
from varigate.contract.keys import MAX_LOSS_PARAMETER, SLO_PARAMETER

_REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        out["required"] = list(required)
    return out


_STR, _BOOL, _INT = {"type": "string"}, {"type": "boolean"}, {"type": "integer"}
_DURATION = _obj({"count": _INT, "ns": _INT}, ("count", "ns"))


_SCALAR = [{"type": "number"}, _STR, _BOOL]
_DATATYPES = [d.value for d in Datatype]


def _metadata_schemas() -> dict[str, Any]:
    """Errors, health, metadata, configuration and statistics documents."""
    return {
        "Error": _obj({"error": {"type": "string", "minLength": 1}}, ("error",), additionalProperties=False),
        "ServerMetadata": _obj(
            {"name": _STR, "version": _STR, "extensions": {"type": "array", "items": _STR}},
            ("name", "version", "extensions"),
        ),
        "Live": _obj({"live": _BOOL, "error": _STR}, ("live",)),
        "Ready": _obj({"ready": _BOOL, "error": _STR}, ("ready",)),
        "ModelReady": _obj({"name": _STR, "ready": _BOOL, "error": _STR}, ("ready",)),
        "MetadataTensor": _obj(
            {"name": _STR, "datatype": _STR, "shape": {"type": "array", "items": _INT}},
            ("name", "datatype", "shape"),
        ),
        "ModelMetadata": _obj(
            {
                "name": _STR,
                "versions": {"type": "array", "items": _STR},
                "platform": _STR,
                "inputs": {"type": "array", "items": ref("MetadataTensor")},
                "outputs": {"type": "array", "items": ref("MetadataTensor")},
                "parameters": {"type": "object"},
            },
            ("name", "platform", "inputs", "outputs"),
        ),
        "ModelConfig": _obj(
            {"name": _STR, "max_batch_size": _INT},
            ("name",),
            description="Triton's model configuration, protobuf JSON field names",
        ),
        "Statistics": _obj(
            {"model_stats": {"type": "array", "items": ref("ModelStatistics")}}, ("model_stats",)
        ),
        "ModelStatistics": _obj(
            {
                "name": _STR,
                "version": _STR,
                "last_inference": _INT,
                "inference_count": _INT,
                "execution_count": _INT,
                "inference_stats": {"type": "object", "additionalProperties": _DURATION},
                "batch_stats": {"type": "array", "items": {"type": "object"}},
                "memory_usage": {"type": "array"},
            },
            ("name", "version", "inference_count", "execution_count", "inference_stats"),
        ),
    }


def _inference_schemas() -> dict[str, Any]:
    """Inference requests and responses (KServe v2 JSON, with Triton's binary extension)."""
    return {
        "Parameters": {"type": "object", "additionalProperties": {"anyOf": _SCALAR}},
        "TensorData": {"type": "array", "items": {"anyOf": [*_SCALAR, ref("TensorData")]}},
        "RequestInput": _obj(
            {
                "name": {"type": "string", "minLength": 1},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": _DATATYPES},
                "parameters": _obj({"binary_data_size": {"type": "integer", "minimum": 0}}),
                "data": ref("TensorData"),
            },
            ("name", "shape", "datatype"),
            description="'data' in the JSON, or parameters.binary_data_size bytes after the JSON header",
        ),
        "RequestOutput": _obj({"name": _STR, "parameters": _obj({"binary_data": _BOOL})}, ("name",)),
        "InferenceRequest": _obj(
            {
                "id": _STR,
                "parameters": _obj(
                    {
                        "binary_data_output": _BOOL,
                        "priority": {"type": "integer", "minimum": 0},
                        "timeout": {"type": "integer", "minimum": 0},
                        SLO_PARAMETER: {"type": "number"},
                        MAX_LOSS_PARAMETER: {"type": "number"},
                    },
                    additionalProperties={"anyOf": _SCALAR},
                ),
                "inputs": {"type": "array", "items": ref("RequestInput")},
                "outputs": {"type": "array", "items": ref("RequestOutput")},
            },
            ("inputs",),
        ),
        "ResponseOutput": _obj(
            {
                "name": _STR,
                "shape": {"type": "array", "items": _INT},
                "datatype": {"type": "string", "enum": _DATATYPES},
                "parameters": {"type": "object"},
                "data": {"type": "array"},
            },
            ("name", "shape", "datatype"),
        ),
        "InferenceResponse": _obj(
            {
                "model_name": _STR,
                "model_version": _STR,
                "id": _STR,
                "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": ref("ResponseOutput")},
            },
            ("model_name", "outputs"),
        ),
    }


def _control_schemas() -> dict[str, Any]:
    """Ground-truth labels and the model repository extension."""
    return {
        "LabelsRequest": _obj(
            {
                "labels": {
                    "type": "array",
                    "items": _obj(
                        {"id": _STR, "label": {"anyOf": [_INT, {"type": "array", "items": _INT}]}},
                        ("id", "label"),
                    ),
                }
            },
            ("labels",),
        ),
        "LabelsResponse": _obj(
            {"accepted": _INT, "unknown": {"type": "array", "items": _STR}}, ("accepted", "unknown")
        ),
        "RepositoryIndexRequest": _obj({"repository_name": _STR, "ready": _BOOL}),
        "RepositoryIndex": {
            "type": "array",
            "items": _obj({"name": _STR, "version": _STR, "state": _STR, "reason": _STR}, ("name", "state")),
        },
        "RepositoryModelRequest": _obj({"parameters": ref("Parameters")}),
    }


def schemas() -> dict[str, Any]:
    """``components.schemas`` of the document, a fresh dict each call."""
    return {**_metadata_schemas(), **_inference_schemas(), **_control_schemas()}
