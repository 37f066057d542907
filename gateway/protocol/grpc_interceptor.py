"""The gRPC server's one interceptor: what every method of ``gateway.protocol.grpc`` shares.

It records when a call arrived (``CallClock``, for the drain at shutdown), checks the restricted-protocol
header of the method's API group (refusing with the status table's code), decodes tolerantly, so that a
malformed protobuf reaches the handler as ``Malformed`` and is answered INVALID_ARGUMENT (grpc itself would
answer UNKNOWN), and maps a unary handler's ``GatewayError`` through the one status table (a bug: INTERNAL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from gateway.core.errors import GatewayError, InvalidInput
from gateway.protocol.restricted import Restrictions
from gateway.protocol.status import grpc_code

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
_API_OF_METHOD = {
    "ServerLive": "health",
    "ServerReady": "health",
    "ModelReady": "health",
    "ServerMetadata": "metadata",
    "ModelMetadata": "metadata",
    "ModelInfer": "inference",
    "ModelStreamInfer": "inference",
    "ModelConfig": "model-config",
    "ModelStatistics": "statistics",
    "RepositoryIndex": "model-repository",
    "RepositoryModelLoad": "model-repository",
    "RepositoryModelUnload": "model-repository",
    "SystemSharedMemoryStatus": "shared-memory",
    "SystemSharedMemoryRegister": "shared-memory",
    "SystemSharedMemoryUnregister": "shared-memory",
    "CudaSharedMemoryStatus": "shared-memory",
    "CudaSharedMemoryRegister": "shared-memory",
    "CudaSharedMemoryUnregister": "shared-memory",
    "TraceSetting": "trace",
    "LogSettings": "logging",
}


class Malformed:
    """Stands in for a request whose bytes did not parse; the handler answers INVALID_ARGUMENT."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidInput) -> None:
        self.error = error


def _api_of(method: str) -> str | None:
    service, _, name = method.lstrip("/").partition("/")
    if service == SERVICE:
        return _API_OF_METHOD.get(name)
    if service == "grpc.health.v1.Health":
        return "health"
    return None


def _tolerant(deserializer: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any]:
    def parse(payload: bytes) -> Any:
        try:
            return deserializer(payload) if deserializer else payload
        except Exception as e:  # noqa: BLE001 - DecodeError, or whatever a deserializer raises on garbage
            return Malformed(InvalidInput(f"malformed protobuf for {method}: {e}"))

    return parse


def _unary(behavior: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def run(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.error.message)
        try:
            return await behavior(request, context)
        except GatewayError as e:
            await context.abort(grpc_code(e.kind), e.message)
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # a bug: answer INTERNAL with its name rather than grpc's UNKNOWN
            log.exception("gRPC handler failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")

    return run


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def _replaced(
    handler: grpc.RpcMethodHandler[_Req, _Resp], **fields: Any
) -> grpc.RpcMethodHandler[_Req, _Resp]:
    """A copy of ``handler`` with ``fields`` replaced. grpc's handlers are namedtuples; the stubs declare
    only their abstract base, without ``_replace``, and aio behaviours return awaitables where the stubs
    say values: so the handler is Any here, at this one boundary."""
    untyped: Any = handler
    replaced: grpc.RpcMethodHandler[_Req, _Resp] = untyped._replace(**fields)
    return replaced


class CallClock:
    """When the server last saw a call arrive (``time.monotonic()``): at shutdown the gateway keeps taking
    calls off the wire, refusing them, until they stop coming (see ``gateway.main``)."""

    __slots__ = ("last_s",)

    def __init__(self) -> None:
        self.last_s = time.monotonic()


class _Method:
    """One method the server serves, as the interceptor answers it: the server's handler, the handler
    wrapped once (tolerant decoding; the status table for unary calls), and its restricted API group
    where a restriction applies to that group."""

    __slots__ = ("api", "found", "wrapped")

    def __init__(self, found: Any, wrapped: Any, api: str | None) -> None:
        self.found, self.wrapped, self.api = found, wrapped, api


class GatewayInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method's handler once, on its first call, and returns that wrapper to every later call:
    a server's handlers are fixed once it starts, and only methods it serves are kept (bounded). The
    restricted-API header is still checked on every call, for methods whose group is restricted."""

    def __init__(self, restrictions: Restrictions, clock: CallClock | None = None) -> None:
        self._restrictions = restrictions
        self._clock = clock or CallClock()
        self._methods: dict[str, _Method] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        self._clock.last_s = time.monotonic()
        method = self._methods.get(details.method)
        if method is None:
            found = await continuation(details)
            if found is None:
                return None
            method = self._methods[details.method] = self._wrap(found, details.method)
        if method.api is not None:
            headers = {k: v for k, v in details.invocation_metadata or () if isinstance(v, str)}
            try:
                self._restrictions.check(method.api, headers.get)
            except GatewayError as e:
                return _refusal(method.found, grpc_code(e.kind), e.message)
        wrapped: grpc.RpcMethodHandler[_Req, _Resp] = method.wrapped
        return wrapped

    def _wrap(self, found: grpc.RpcMethodHandler[_Req, _Resp], name: str) -> _Method:
        handler: Any = found  # see _replaced: grpc's namedtuple, with aio behaviours
        api = _api_of(name)
        restricted = api if api is not None and api in self._restrictions.by_api else None
        parse = _tolerant(handler.request_deserializer, name)
        if handler.unary_unary is not None:
            wrapped = _replaced(found, request_deserializer=parse, unary_unary=_unary(handler.unary_unary))
        else:
            wrapped = _replaced(found, request_deserializer=parse)
        return _Method(found, wrapped, restricted)


def _refusal(
    handler: grpc.RpcMethodHandler[_Req, _Resp], code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler[_Req, _Resp]:
    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    kind = "unary_unary"
    if handler.request_streaming and handler.response_streaming:
        kind = "stream_stream"
    elif handler.response_streaming:
        kind = "unary_stream"
    elif handler.request_streaming:
        kind = "stream_unary"
    return _replaced(handler, **{kind: refuse})
