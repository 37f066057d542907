"""KServe v2 / Triton HTTP endpoints over any ``InferenceService``: decode, call the service, encode.

Routes are plain Starlette routes on a FastAPI app (no per-request dependency injection or pydantic on the
inference path); request bodies are read raw so binary tensors are never copied through JSON. Errors are
Triton's ``{"error": "..."}`` with the status from ``gateway.protocol.status``; one handler on
``GatewayError`` covers the whole family (Starlette looks handlers up along the class hierarchy).
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.core.api import InferenceService
from gateway.core.errors import (
    ErrorKind,
    GatewayError,
    InvalidInput,
    ModelNotReady,
    PayloadTooLarge,
    Unsupported,
)
from gateway.core.selection.slo import parse_slo_ms
from gateway.core.types import InferRequest
from gateway.protocol import http_json
from gateway.protocol.codec import DEFAULT_LIMITS, RequestLimits
from gateway.protocol.http_codec import (
    HEADER_LENGTH,
    decode_infer_request,
    dumps,
    encode_infer_response,
    load_json_object,
    parse_header_length,
)
from gateway.protocol.restricted import Restrictions
from gateway.protocol.status import http_status
from varigate.contract.keys import (
    SLO_HEADER,
    SLO_MET_HEADER,
    SLO_MET_PARAMETER,
    SLO_PARAMETER,
    VARIANT_HEADER,
    VARIANT_PARAMETER,
)

T = TypeVar("T")

_CLIENT_GONE = 499  # nginx's "client closed request"; never read, for logs only
_DRAIN_CAP_FACTOR = 4  # read (and discard) at most this many times the limit before answering 413


@dataclass(frozen=True, slots=True)
class HttpOptions:
    max_body_bytes: int = 64 * 1024 * 1024
    restrictions: Restrictions = field(default_factory=Restrictions)
    limits: RequestLimits = DEFAULT_LIMITS


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


def _with_slo_header(request: InferRequest, header: str | None) -> InferRequest:
    """The ``varigate-slo-ms`` header is a shortcut for the ``slo_ms`` parameter (which wins)."""
    if header is None or SLO_PARAMETER in request.parameters:
        return request
    slo_ms = parse_slo_ms(header, f"header {SLO_HEADER!r}")
    return dataclasses.replace(request, parameters={**request.parameters, SLO_PARAMETER: slo_ms})


class _LoadBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    parameters: dict[str, Any] = {}


def _health(key: str, ok: bool, why: str) -> Response:
    """Open Inference Protocol health bodies (``{"live": true}``, ``{"ready": true}``); 503 when not, so
    load balancers and Kubernetes probes see it, as Triton answers."""
    doc: dict[str, Any] = {key: ok}
    if not ok:
        doc["error"] = why
    return json_response(doc, 200 if ok else http_status(ErrorKind.UNAVAILABLE))


def json_response(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(doc), status_code=status, headers=headers, media_type="application/json")


def _error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


async def _on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _error_response(http_status(exc.kind), exc.message)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error_response(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    return _error_response(500, f"internal error: {type(exc).__name__}: {exc}")


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or ``None`` once the client has disconnected: the work is cancelled then, so a
    request whose client gave up (a timeout, under overload) leaves the queue at once instead of taking a
    batch slot for an answer nobody reads. gRPC does the same by itself (a cancelled call cancels its
    handler)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read, so ``receive`` waits for that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def read_body(request: Request, limit: int) -> bytes:
    """The (decompressed) body, or PayloadTooLarge. An oversized body is drained, not kept, so the client
    reads a clean 413 instead of a broken pipe."""
    declared = request.headers.get("content-length")
    too_big = declared is not None and declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_big = True
        if too_big:
            chunks.clear()
            if size > _DRAIN_CAP_FACTOR * limit:
                break
        else:
            chunks.append(chunk)
    if too_big:
        raise PayloadTooLarge(f"request body of {declared or size} bytes exceeds the limit of {limit} bytes")
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "deflate"):
        body = _decompress(body, encoding, limit)
    elif encoding != "identity":
        raise Unsupported(f"Content-Encoding {encoding!r} is not supported; use gzip or deflate")
    return body


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate at most ``limit + 1`` bytes, whatever the body holds. One gzip member or zlib stream:
    bytes after its end (a second gzip member) and a truncated stream are refused, not dropped."""
    d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise InvalidInput(f"request body is not valid {encoding} data: {e}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
    if body and not d.eof:
        raise InvalidInput(f"request body is truncated {encoding} data")
    if d.unused_data:
        raise InvalidInput(
            f"request body has {len(d.unused_data)} bytes after the end of its {encoding} data; "
            "one gzip member or zlib stream is accepted"
        )
    return out


def create_app(service: InferenceService, options: HttpOptions | None = None) -> FastAPI:
    opts = options or HttpOptions()
    allow = opts.restrictions.check
    app = FastAPI(title="varigate", openapi_url=None, docs_url=None, redoc_url=None)

    def route(
        path: str, methods: list[str], api: str
    ) -> Callable[[Callable[..., Awaitable[Response]]], None]:
        def register(fn: Callable[[Request], Awaitable[Response]]) -> None:
            async def endpoint(request: Request) -> Response:
                allow(api, request.headers.get)
                return await fn(request)

            app.add_route(path, endpoint, methods=methods)
            if "{model}" in path:
                versioned = path.replace("{model}", "{model}/versions/{version}")
                app.add_route(versioned, endpoint, methods=methods)

        return register

    def model_args(request: Request) -> tuple[str, str]:
        return request.path_params["model"], request.path_params.get("version", "")

    @route("/v2", ["GET"], "metadata")
    async def server_metadata(request: Request) -> Response:
        return json_response(http_json.server_metadata(service.server_metadata()))

    @route("/varigate/openapi.json", ["GET"], "metadata")  # outside /v2: no clash with Triton's paths
    async def openapi_json(request: Request) -> Response:
        from gateway.protocol.openapi import openapi_document

        return json_response(openapi_document())

    # Health answers carry the Open Inference Protocol's small JSON bodies (KServe's SDK reads them);
    # tritonclient looks only at the status.
    @route("/v2/health/live", ["GET"], "health")
    async def live(request: Request) -> Response:
        return _health("live", service.server_live(), "server is not live")

    @route("/v2/health/ready", ["GET"], "health")
    async def ready(request: Request) -> Response:
        return _health("ready", service.server_ready(), "server is not ready")

    # Before /v2/models/{model}, which would otherwise take "stats" for a model name.
    @route("/v2/models/stats", ["GET"], "statistics")
    async def all_stats(request: Request) -> Response:
        return json_response(http_json.statistics(service.statistics()))

    @route("/v2/models/{model}/stats", ["GET"], "statistics")
    async def model_stats(request: Request) -> Response:
        return json_response(http_json.statistics(service.statistics(*model_args(request))))

    @route("/v2/models/{model}", ["GET"], "metadata")
    async def model_metadata(request: Request) -> Response:
        return json_response(http_json.model_metadata(service.model_metadata(*model_args(request))))

    # 200 {"name", "ready": true} when ready; per the spec, 4xx when not: 404 for a model the repository
    # does not have, 400 for one that is not ready (as Triton), each with the reason.
    @route("/v2/models/{model}/ready", ["GET"], "health")
    async def model_ready(request: Request) -> Response:
        name, version = model_args(request)
        try:
            service.check_model(name, version)
        except ModelNotReady as e:
            return json_response({"name": name, "ready": False, "error": e.message}, 400)
        return json_response({"name": name, "ready": True})

    @route("/v2/models/{model}/config", ["GET"], "model-config")
    async def model_config(request: Request) -> Response:
        return json_response(service.model_config(*model_args(request)))

    @route("/v2/models/{model}/infer", ["POST"], "inference")
    async def infer(request: Request) -> Response:
        name, version = model_args(request)
        body = await read_body(request, opts.max_body_bytes)  # read whole, so the client reads our answer
        service.check_model(name, version)  # before any tensor is decoded
        header_length = parse_header_length(request.headers.get(HEADER_LENGTH), len(body))
        decoded = decode_infer_request(body, header_length, name, version, opts.limits)
        infer_request = _with_slo_header(decoded.request, request.headers.get(SLO_HEADER))
        response = await unless_client_leaves(request, service.infer(infer_request))
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

    async def optional_json(request: Request, schema: type[BaseModel], what: str) -> Any:
        body = await read_body(request, opts.max_body_bytes)
        try:
            return schema.model_validate(load_json_object(body, what) if body.strip() else {})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise InvalidInput(f"{what}: {problems}") from None

    @route("/v2/models/{model}/labels", ["POST"], "labels")
    async def labels(request: Request) -> Response:
        body = await optional_json(request, _LabelsBody, "the labels request")
        items = [(item.id, item.label) for item in body.labels]
        accepted, unknown = service.record_labels(request.path_params["model"], items)
        return json_response({"accepted": accepted, "unknown": unknown})

    @route("/v2/repository/index", ["POST"], "model-repository")
    async def repository_index(request: Request) -> Response:
        body = await optional_json(request, _IndexBody, "the repository index request")
        return json_response(http_json.repository_index(service.repository_index(ready_only=body.ready)))

    @route("/v2/repository/models/{name}/load", ["POST"], "model-repository")
    async def load(request: Request) -> Response:
        body = await optional_json(request, _LoadBody, "the model load request")
        await service.load_model(request.path_params["name"], body.parameters or None)
        return Response(status_code=200)

    @route("/v2/repository/models/{name}/unload", ["POST"], "model-repository")
    async def unload(request: Request) -> Response:
        body = await optional_json(request, _LoadBody, "the model unload request")
        dependents = body.parameters.get("unload_dependents", False)
        if not isinstance(dependents, bool):
            raise InvalidInput(f"parameters.unload_dependents must be true or false, got {dependents!r}")
        await service.unload_model(request.path_params["name"], unload_dependents=dependents)
        return Response(status_code=200)

    for prefix, api in (
        ("/v2/systemsharedmemory", "shared-memory"),
        ("/v2/cudasharedmemory", "shared-memory"),
        ("/v2/trace", "trace"),
        ("/v2/logging", "logging"),
    ):

        async def unsupported(request: Request, api: str = api) -> Response:
            raise Unsupported(f"the {api} extension is not supported by this server")

        route(prefix + "/{rest:path}", ["GET", "POST"], api)(unsupported)
        route(prefix, ["GET", "POST"], api)(unsupported)

    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
    return app
