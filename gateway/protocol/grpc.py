"""Triton's ``inference.GRPCInferenceService`` (the compiled stubs shipped in ``tritonclient``) and the
standard ``grpc.health.v1`` service, on ``grpc.aio``, over any ``InferenceService``.

One interceptor does what every method shares: the restricted-API header check, decoding that turns a
malformed protobuf into INVALID_ARGUMENT (grpc itself would answer UNKNOWN), and mapping ``GatewayError``
through the one status table. The servicer methods only decode, call the service, encode. Methods this
server does not implement (shared memory, trace, logging) keep the stub's UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from gateway.core.api import InferenceService
from gateway.core.errors import GatewayError, InvalidInput
from gateway.protocol import grpc_codec as codec
from gateway.protocol.codec import DEFAULT_LIMITS, RequestLimits
from gateway.protocol.grpc_limits import GrpcLimits
from gateway.protocol.restricted import GRPC_HEADER_PREFIX, Restrictions
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


class GatewayInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, restrictions: Restrictions, clock: CallClock | None = None) -> None:
        self._restrictions = restrictions
        self._clock = clock or CallClock()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        self._clock.last_s = time.monotonic()
        found = await continuation(details)
        if found is None:
            return None
        handler: Any = found  # see _replaced: grpc's namedtuple, with aio behaviours
        api = _api_of(details.method)
        if api is not None:
            headers = {k: v for k, v in details.invocation_metadata or () if isinstance(v, str)}
            try:
                self._restrictions.check(api, headers.get)
            except GatewayError as e:
                return _refusal(handler, grpc_code(e.kind), e.message)
        parse = _tolerant(handler.request_deserializer, details.method)
        if handler.unary_unary is not None:
            return _replaced(found, request_deserializer=parse, unary_unary=_unary(handler.unary_unary))
        return _replaced(found, request_deserializer=parse)


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


# The ignore below is unavoidable: tritonclient ships no types, so its generated servicer base (UNIMPLEMENTED
# defaults for the methods this server leaves out) is Any, and subclassing it is how grpc registers it.
class InferenceServicer(pbg.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(
        self, service: InferenceService, limits: RequestLimits = DEFAULT_LIMITS, max_stream_inflight: int = 64
    ) -> None:
        self._service = service
        self._limits = limits
        self._max_stream_inflight = max_stream_inflight

    def _decode(self, request: Any) -> Any:
        self._service.check_model(request.model_name, request.model_version)  # before any tensor
        return codec.decode_infer_request(request, self._limits)

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self._service.server_live())

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self._service.server_ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=self._service.model_ready(request.name, request.version))

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return codec.encode_server_metadata(self._service.server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        return codec.encode_model_metadata(self._service.model_metadata(request.name, request.version))

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        return codec.encode_model_config(self._service.model_config(request.name, request.version))

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        return codec.encode_statistics(self._service.statistics(request.name, request.version))

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        return codec.encode_repository_index(self._service.repository_index(ready_only=request.ready))

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        params = codec.parameters_from_pb(request.parameters)
        await self._service.load_model(request.model_name, params or None)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        dependents = codec.parameters_from_pb(request.parameters).get("unload_dependents", False)
        if not isinstance(dependents, bool):
            raise InvalidInput(f"parameter unload_dependents must be a bool_param, got {dependents!r}")
        await self._service.unload_model(request.model_name, unload_dependents=dependents)
        return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        decoded = self._decode(request)
        remaining = context.time_remaining()  # the client's deadline, if it set one
        if remaining is not None:
            decoded = dataclasses.replace(decoded, deadline_s=time.monotonic() + remaining)
        response = await self._service.infer(decoded)
        return codec.encode_infer_response(response)

    async def _stream_one(self, request: Any) -> Any:
        """One request of a stream: its response, or its error in ``error_message`` (the stream goes on)."""
        try:
            if isinstance(request, Malformed):
                raise request.error
            response = await self._service.infer(self._decode(request))
            return pb.ModelStreamInferResponse(infer_response=codec.encode_infer_response(response))
        except GatewayError as e:
            message = e.message
        except Exception as e:  # a bug must not end the other requests of the stream
            log.exception("stream request failed")
            message = f"internal error: {type(e).__name__}: {e}"
        echo = pb.ModelInferResponse()
        if not isinstance(request, Malformed):
            echo = pb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id
            )
        return pb.ModelStreamInferResponse(error_message=message, infer_response=echo)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        """Requests run concurrently (so one stream's requests can share a batch); responses are written
        as they complete, each carrying its request's ``id``. At most ``max_stream_inflight`` requests are
        in progress (until their response is written): the stream is not read further until one is, so
        a client sending faster than it is served meets HTTP/2 flow control, not an unbounded queue."""
        done: asyncio.Queue[Any] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(self._max_stream_inflight)

        async def run(request: Any) -> None:
            done.put_nowait(await self._stream_one(request))

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await slots.acquire()  # released once its response is written
                    task = asyncio.create_task(run(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                while tasks:
                    await asyncio.wait(set(tasks))
            finally:
                done.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await done.get()) is not None:
                yield item
                slots.release()
        finally:
            reader.cancel()


def create_server(
    service: InferenceService,
    *,
    restrictions: Restrictions | None = None,
    limits: GrpcLimits | None = None,
    request_limits: RequestLimits = DEFAULT_LIMITS,
    clock: CallClock | None = None,
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    """An unstarted server with both services added; bind it with ``add_insecure_port``."""
    rules = restrictions or Restrictions(header_prefix=GRPC_HEADER_PREFIX, noun="protocol")
    bounds = limits or GrpcLimits()
    server = grpc.aio.server(
        interceptors=[GatewayInterceptor(rules, clock)],
        options=bounds.options(),
        maximum_concurrent_rpcs=bounds.max_concurrent_rpcs,
    )
    servicer = InferenceServicer(service, request_limits, bounds.max_stream_inflight)
    pbg.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return server, health


async def set_serving(health: health_aio.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE):
        await health.set(name, status)
