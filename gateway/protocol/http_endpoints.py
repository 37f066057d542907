"""One handler per KServe v2 / Triton REST endpoint, and the route table that names them (as MLServer's
``rest/endpoints.py`` and ``rest/app.py``): each handler decodes, calls the ``InferenceService``, encodes.
``gateway.protocol.http`` mounts the table; errors raised here go through its one ``GatewayError`` handler.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from gateway.core.api import InferenceService
from gateway.core.errors import ErrorKind, InvalidInput, ModelNotReady
from gateway.core.selection.slo import parse_slo_ms
from gateway.core.types import InferRequest
from gateway.protocol import http_json
from gateway.protocol.codec import RequestLimits
from gateway.protocol.http_body import read_body, unless_client_leaves
from gateway.protocol.http_codec import (
    HEADER_LENGTH,
    decode_infer_request,
    encode_infer_response,
    load_json_object,
    parse_header_length,
)
from gateway.protocol.http_tensor_data import dumps
from gateway.protocol.openapi import OPENAPI_PATH, openapi_document
from gateway.protocol.status import http_status
from varigate.contract.keys import (
    SLO_HEADER,
    SLO_MET_HEADER,
    SLO_MET_PARAMETER,
    SLO_PARAMETER,
    VARIANT_HEADER,
    VARIANT_PARAMETER,
)

_CLIENT_GONE = 499  # nginx's "client closed request"; never read, for logs only


class _IndexBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    repository_name: str = ""
    ready: bool = False


class _Label(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    label: int | list[int]


class _LabelsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[_Label]


class _LoadBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    parameters: dict[str, Any] = {}


def json_response(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(doc), status_code=status, headers=headers, media_type="application/json")


def _health(key: str, ok: bool, why: str) -> Response:
    """Open Inference Protocol health bodies (``{"live": true}``, ``{"ready": true}``); 503 when not, so
    load balancers and Kubernetes probes see it, as Triton answers. (tritonclient reads only the status.)"""
    doc: dict[str, Any] = {key: ok}
    if not ok:
        doc["error"] = why
    return json_response(doc, 200 if ok else http_status(ErrorKind.UNAVAILABLE))


def _with_slo_header(request: InferRequest, header: str | None) -> InferRequest:
    """The ``varigate-slo-ms`` header is a shortcut for the ``slo_ms`` parameter (which wins)."""
    if header is None or SLO_PARAMETER in request.parameters:
        return request
    slo_ms = parse_slo_ms(header, f"header {SLO_HEADER!r}")
    return dataclasses.replace(request, parameters={**request.parameters, SLO_PARAMETER: slo_ms})


def _model_args(request: Request) -> tuple[str, str]:
    return request.path_params["model"], request.path_params.get("version", "")


class Endpoints:
    """The handlers, over one service; bodies are read whole (so the client reads our answer) within
    ``max_body_bytes``."""

    def __init__(self, service: InferenceService, max_body_bytes: int, limits: RequestLimits) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.limits = limits

    async def server_metadata(self, request: Request) -> Response:
        return json_response(http_json.server_metadata(self.service.server_metadata()))

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document())

    async def live(self, request: Request) -> Response:
        return _health("live", self.service.server_live(), "server is not live")

    async def ready(self, request: Request) -> Response:
        return _health("ready", self.service.server_ready(), "server is not ready")

    async def all_stats(self, request: Request) -> Response:
        return json_response(http_json.statistics(self.service.statistics()))

    async def model_stats(self, request: Request) -> Response:
        return json_response(http_json.statistics(self.service.statistics(*_model_args(request))))

    async def model_metadata(self, request: Request) -> Response:
        return json_response(http_json.model_metadata(self.service.model_metadata(*_model_args(request))))

    async def model_ready(self, request: Request) -> Response:
        """200 ``{"name", "ready": true}`` when ready; per the spec, 4xx when not: 404 for a model the
        repository does not have, 400 for one that is not ready (as Triton), each with the reason."""
        name, version = _model_args(request)
        try:
            self.service.check_model(name, version)
        except ModelNotReady as e:
            return json_response({"name": name, "ready": False, "error": e.message}, 400)
        return json_response({"name": name, "ready": True})

    async def model_config(self, request: Request) -> Response:
        return json_response(self.service.model_config(*_model_args(request)))

    async def infer(self, request: Request) -> Response:
        name, version = _model_args(request)
        body = await read_body(request, self.max_body_bytes)
        self.service.check_model(name, version)  # before any tensor is decoded
        header_length = parse_header_length(request.headers.get(HEADER_LENGTH), len(body))
        decoded = decode_infer_request(body, header_length, name, version, self.limits)
        infer_request = _with_slo_header(decoded.request, request.headers.get(SLO_HEADER))
        response = await unless_client_leaves(request, self.service.infer(infer_request))
        if response is None:
            return Response(status_code=_CLIENT_GONE)  # nobody reads it; uvicorn drops the connection
        payload, json_length = encode_infer_response(response, decoded.request, decoded.binary_data_output)
        variant = response.parameters.get(VARIANT_PARAMETER) or response.model_name
        headers = {VARIANT_HEADER: str(variant)}
        if SLO_MET_PARAMETER in response.parameters:
            headers[SLO_MET_HEADER] = "true" if response.parameters[SLO_MET_PARAMETER] else "false"
        if json_length is None:
            return Response(payload, headers=headers, media_type="application/json")
        headers[HEADER_LENGTH] = str(json_length)
        return Response(payload, headers=headers, media_type="application/octet-stream")

    async def labels(self, request: Request) -> Response:
        body = await self._optional_json(request, _LabelsBody, "the labels request")
        items = [(item.id, item.label) for item in body.labels]
        accepted, unknown = self.service.record_labels(request.path_params["model"], items)
        return json_response({"accepted": accepted, "unknown": unknown})

    async def repository_index(self, request: Request) -> Response:
        body = await self._optional_json(request, _IndexBody, "the repository index request")
        return json_response(http_json.repository_index(self.service.repository_index(ready_only=body.ready)))

    async def load(self, request: Request) -> Response:
        body = await self._optional_json(request, _LoadBody, "the model load request")
        await self.service.load_model(request.path_params["name"], body.parameters or None)
        return Response(status_code=200)

    async def unload(self, request: Request) -> Response:
        body = await self._optional_json(request, _LoadBody, "the model unload request")
        dependents = body.parameters.get("unload_dependents", False)
        if not isinstance(dependents, bool):
            raise InvalidInput(f"parameters.unload_dependents must be true or false, got {dependents!r}")
        await self.service.unload_model(request.path_params["name"], unload_dependents=dependents)
        return Response(status_code=200)

    async def _optional_json(self, request: Request, schema: type[BaseModel], what: str) -> Any:
        body = await read_body(request, self.max_body_bytes)
        try:
            return schema.model_validate(load_json_object(body, what) if body.strip() else {})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise InvalidInput(f"{what}: {problems}") from None


Handler = Callable[[Endpoints, Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """``path`` (and, for a per-model path, its ``/versions/{version}`` form) answered by ``handler``
    once the restricted-API group ``api`` allows the request; no handler: an extension this server does
    not support (501, naming it)."""

    path: str
    methods: tuple[str, ...]
    api: str
    handler: Handler | None = None


_GET, _POST, _ANY = ("GET",), ("POST",), ("GET", "POST")
_UNSUPPORTED = (
    ("/v2/systemsharedmemory", "shared-memory"),
    ("/v2/cudasharedmemory", "shared-memory"),
    ("/v2/trace", "trace"),
    ("/v2/logging", "logging"),
)

ROUTES: tuple[Route, ...] = (
    Route("/v2", _GET, "metadata", Endpoints.server_metadata),
    Route(OPENAPI_PATH, _GET, "metadata", Endpoints.openapi),  # outside /v2: no clash with Triton's paths
    Route("/v2/health/live", _GET, "health", Endpoints.live),
    Route("/v2/health/ready", _GET, "health", Endpoints.ready),
    # Before /v2/models/{model}, which would otherwise take "stats" for a model name.
    Route("/v2/models/stats", _GET, "statistics", Endpoints.all_stats),
    Route("/v2/models/{model}/stats", _GET, "statistics", Endpoints.model_stats),
    Route("/v2/models/{model}", _GET, "metadata", Endpoints.model_metadata),
    Route("/v2/models/{model}/ready", _GET, "health", Endpoints.model_ready),
    Route("/v2/models/{model}/config", _GET, "model-config", Endpoints.model_config),
    Route("/v2/models/{model}/infer", _POST, "inference", Endpoints.infer),
    Route("/v2/models/{model}/labels", _POST, "labels", Endpoints.labels),
    Route("/v2/repository/index", _POST, "model-repository", Endpoints.repository_index),
    Route("/v2/repository/models/{name}/load", _POST, "model-repository", Endpoints.load),
    Route("/v2/repository/models/{name}/unload", _POST, "model-repository", Endpoints.unload),
    *(Route(prefix + rest, _ANY, api) for prefix, api in _UNSUPPORTED for rest in ("/{rest:path}", "")),
)
