"""An OpenAPI 3.0 description of the KServe v2 / Open Inference Protocol REST API *as this gateway serves it*
(``gateway.protocol.http``): the same paths, the request bodies it decodes, the documents it answers with and
the status codes its one error table (``gateway.protocol.status``) produces, every error ``{"error": msg}``.

Modelled on the Open Inference Protocol's REST OpenAPI (KServe's ``rest_predict_v2.yaml``), with what Triton
and this gateway add: the binary tensor data extension, model configuration, statistics, the model
repository extension, ``varigate`` headers and the ``/versions/{version}`` form of every per-model path.
Served at ``GET /varigate/openapi.json``; the fuzz tests (``tests/fuzz``) generate requests from it.
"""

from __future__ import annotations

from typing import Any

from gateway.protocol.openapi_schemas import ref, schemas
from varigate.contract.keys import SLO_HEADER

OPENAPI_PATH = "/varigate/openapi.json"

_STATUS_TEXT = {
    400: "Bad request: the message names the bad value",
    404: "Unknown model, version or path",
    413: "Request body over the server's limit",
    429: "Overloaded: queue full, or no variant can meet the request's SLO",
    501: "Not supported by this server (extension or control mode)",
    503: "Not ready, or shutting down",
    504: "The request's timeout passed while it waited",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for code in errors:
        out[str(code)] = {"description": _STATUS_TEXT[code], "content": _json(ref("Error"))}
    return out


def _ok(schema_name: str | None, description: str = "OK") -> dict[str, Any]:
    if schema_name is None:
        return {"description": description}
    return {"description": description, "content": _json(ref(schema_name))}


def _operation(op_id: str, summary: str, tag: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses, **extra}


def _get(op_id: str, summary: str, tag: str, ok: str, *errors: int) -> dict[str, Any]:
    return {"get": _operation(op_id, summary, tag, _responses(_ok(ok), *errors))}


def _health(op_id: str, summary: str, ok: str, not_ok: int, what: str, *errors: int) -> dict[str, Any]:
    """Health answers: 200 with ``{"<key>": true}``; not ready/live with ``false`` and an ``error``."""
    responses = {
        **_responses(_ok(ok), *errors),
        str(not_ok): {"description": what, "content": _json(ref(ok))},
    }
    return {"get": _operation(op_id, summary, "health", responses)}


def _name_param(name: str, description: str) -> dict[str, Any]:
    # A path segment: no "/", and not a name the router gives to another route.
    schema = {"type": "string", "minLength": 1, "pattern": "^[^/]+$", "not": {"enum": [".", "..", "stats"]}}
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


_MODEL = _name_param("model", "A variant (e.g. minilm.int8: pinned) or a logical model (the policy picks)")
_VERSION = {
    **_name_param("version", "A version number of the model"),
    "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$", "not": {"enum": [".", ".."]}},
}


def _body(schema_name: str) -> dict[str, Any]:
    return {"required": False, "content": _json(ref(schema_name))}


def _infer_operation(op_id: str) -> dict[str, Any]:
    headers = [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "description": "Binary tensor data extension: the length of the JSON header; binary data follows",
            "schema": {"type": "integer"},
        },
        {
            "name": SLO_HEADER,
            "in": "header",
            "required": False,
            "description": "Shortcut for the slo_ms request parameter (milliseconds; the parameter wins)",
            "schema": {"type": "string"},
        },
    ]
    body = {
        "required": True,
        "content": {
            "application/json": {"schema": ref("InferenceRequest")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    ok = {
        "description": "The outputs; binary outputs follow the JSON header (Inference-Header-Content-Length)",
        "content": {
            "application/json": {"schema": ref("InferenceResponse")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return _operation(
        op_id,
        "Inference",
        "inference",
        _responses(ok, 400, 404, 413, 429, 501, 503, 504),
        parameters=headers,
        requestBody=body,
    )


def _model_paths(versioned: bool) -> dict[str, Any]:
    base = "/v2/models/{model}" + ("/versions/{version}" if versioned else "")
    params = [_MODEL, _VERSION] if versioned else [_MODEL]
    v = "-version" if versioned else ""
    paths = {
        base: _get(f"model-metadata{v}", "Model metadata", "metadata", "ModelMetadata", 400, 404),
        base + "/ready": _health(
            f"model-ready{v}", "Model ready", "ModelReady", 400, "Not ready, with the reason", 404
        ),
        base + "/config": _get(
            f"model-config{v}", "Model configuration", "model-config", "ModelConfig", 400, 404
        ),
        base + "/stats": _get(
            f"model-statistics{v}", "Model statistics", "statistics", "Statistics", 400, 404
        ),
        base + "/infer": {"post": _infer_operation(f"model-infer{v}")},
        base + "/labels": {
            "post": _operation(
                f"model-labels{v}",
                "Ground-truth labels for earlier requests (drift monitor)",
                "inference",
                _responses(_ok("LabelsResponse"), 400, 404, 413, 501),
                requestBody=_body("LabelsRequest"),
            )
        },
    }
    for item in paths.values():
        item["parameters"] = params
    return paths


def _repository_paths() -> dict[str, Any]:
    name = _name_param("name", "A model in the repository")
    out: dict[str, Any] = {
        "/v2/repository/index": {
            "post": _operation(
                "repository-index",
                "Repository index",
                "model-repository",
                _responses(_ok("RepositoryIndex"), 400, 413),
                requestBody=_body("RepositoryIndexRequest"),
            )
        },
    }
    for action in ("load", "unload"):
        out[f"/v2/repository/models/{{name}}/{action}"] = {
            "parameters": [name],
            "post": _operation(
                f"repository-model-{action}",
                f"Model {action} (explicit model control mode only)",
                "model-repository",
                _responses(_ok(None, f"{action.capitalize()}ed"), 400, 404, 413, 501),
                requestBody=_body("RepositoryModelRequest"),
            ),
        }
    return out


def openapi_document() -> dict[str, Any]:
    """The whole document, a fresh dict each call."""
    paths: dict[str, Any] = {
        "/v2": _get("server-metadata", "Server metadata", "metadata", "ServerMetadata", 400),
        "/v2/health/live": _health("server-live", "Server live", "Live", 503, "Not live"),
        "/v2/health/ready": _health(
            "server-ready", "Server ready", "Ready", 503, "Not ready, or shutting down"
        ),
        "/v2/models/stats": _get("statistics", "Statistics of every model", "statistics", "Statistics", 400),
        **_model_paths(versioned=False),
        **_model_paths(versioned=True),
        **_repository_paths(),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "varigate: KServe v2 / Open Inference Protocol REST API",
            "version": "2.0",
            "description": __doc__.strip().splitlines()[0] if __doc__ else "",
            "license": {"name": "Apache-2.0"},
        },
        "paths": paths,
        "components": {"schemas": schemas()},
    }
