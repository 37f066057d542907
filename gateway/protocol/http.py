"""KServe v2 / Triton HTTP endpoints over any ``InferenceService``: the route table of
``gateway.protocol.http_endpoints`` mounted on a FastAPI app, behind the restricted-API check.

Routes are plain Starlette routes (no per-request dependency injection or pydantic on the inference path);
request bodies are read raw so binary tensors are never copied through JSON. Errors are Triton's
``{"error": "..."}`` with the status from ``gateway.protocol.status``; one handler on ``GatewayError`` covers
the whole family (Starlette looks handlers up along the class hierarchy).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.core.api import InferenceService
from gateway.core.errors import GatewayError, Unsupported
from gateway.protocol.codec import DEFAULT_LIMITS, MAX_REQUEST_BYTES, RequestLimits
from gateway.protocol.http_endpoints import ROUTES, Endpoints, Route, json_response
from gateway.protocol.restricted import Restrictions
from gateway.protocol.status import http_status

_VERSIONED = "{model}/versions/{version}"  # every per-model path also has this form


@dataclass(frozen=True, slots=True)
class HttpOptions:
    max_body_bytes: int = MAX_REQUEST_BYTES
    restrictions: Restrictions = field(default_factory=Restrictions)
    limits: RequestLimits = DEFAULT_LIMITS


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


def _endpoint(
    route: Route, endpoints: Endpoints, restrictions: Restrictions
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of ``route``: the restricted-API check, then its handler."""
    handler = route.handler

    async def endpoint(request: Request) -> Response:
        restrictions.check(route.api, request.headers.get)
        if handler is None:
            raise Unsupported(f"the {route.api} extension is not supported by this server")
        return await handler(endpoints, request)

    return endpoint


def create_app(service: InferenceService, options: HttpOptions | None = None) -> FastAPI:
    opts = options or HttpOptions()
    endpoints = Endpoints(service, opts.max_body_bytes, opts.limits)
    # FastAPI's own OpenTelemetry would look up the global providers (environment reads) on every request,
    # and this gateway configures none: its metrics are Prometheus' (gateway/metrics.py)
    telemetry: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="varigate", openapi_url=None, docs_url=None, redoc_url=None, telemetry=telemetry)
    # inference first: Starlette matches a request against the routes in order, one regex each, and no
    # other route matches an inference path (the order of the others is kept)
    for route in sorted(ROUTES, key=lambda r: r.api != "inference"):
        endpoint = _endpoint(route, endpoints, opts.restrictions)
        methods = list(route.methods)
        app.add_route(route.path, endpoint, methods=methods)
        if "{model}" in route.path:
            app.add_route(route.path.replace("{model}", _VERSIONED), endpoint, methods=methods)
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
    return app
