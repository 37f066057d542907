"""Triton's ``inference.GRPCInferenceService`` (the compiled stubs shipped in ``tritonclient``) and the
standard ``grpc.health.v1`` service, on ``grpc.aio``, over any ``InferenceService``.

One interceptor (``gateway.protocol.grpc_interceptor``) does what every method shares: the restricted-API
header check, decoding that turns a malformed protobuf into INVALID_ARGUMENT (grpc itself would answer
UNKNOWN), and mapping ``GatewayError`` through the one status table. The servicer methods only decode, call
the service, encode. Methods this server does not implement (shared memory, trace, logging) keep the stub's
UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from gateway.core.api import InferenceService
from gateway.core.errors import GatewayError, InvalidInput
from gateway.protocol import grpc_codec as codec
from gateway.protocol.codec import DEFAULT_LIMITS, RequestLimits
from gateway.protocol.grpc_interceptor import SERVICE, CallClock, GatewayInterceptor, Malformed
from gateway.protocol.grpc_limits import GrpcLimits
from gateway.protocol.restricted import GRPC_HEADER_PREFIX, Restrictions

__all__ = ["SERVICE", "CallClock", "InferenceServicer", "create_server", "set_serving"]

log = logging.getLogger(__name__)


# The ignore below is unavoidable: tritonclient ships no types, so its generated servicer base (UNIMPLEMENTED
# defaults for the methods this server leaves out) is Any, and subclassing it is how grpc registers it.
class InferenceServicer(pbg.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(
        self, service: InferenceService, limits: RequestLimits = DEFAULT_LIMITS, max_stream_inflight: int = 64
    ) -> None:
        self._service = service
        self._limits = limits
        self._max_stream_inflight = max_stream_inflight

    def _decode(self, request: Any, deadline_s: float | None = None) -> Any:
        self._service.check_model(request.model_name, request.model_version)  # before any tensor
        return codec.decode_infer_request(request, self._limits, deadline_s)

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
        remaining = context.time_remaining()  # the client's deadline, if it set one
        deadline_s = None if remaining is None else time.monotonic() + remaining
        response = await self._service.infer(self._decode(request, deadline_s))
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
