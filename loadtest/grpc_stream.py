"""``grpc-stream``: all requests on one bidirectional ``ModelStreamInfer`` stream, as Triton's streaming
clients send them, over tritonclient's own compiled stubs (``tritonclient.grpc.service_pb2_grpc``).

Requests and responses are matched by request ``id``, errors included: tritonclient's ``stream_infer``
drops the id of a failed response, so it cannot be used to attribute errors under concurrency. A stream
that breaks fails its pending requests; the next request opens a new one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from loadtest.payloads import Payloads
from loadtest.reply import GRPC_KINDS, Reply, grpc_variant


class GrpcStreamDriver:
    """All requests on one ``ModelStreamInfer`` stream, as Triton's streaming clients send them."""

    def __init__(
        self, url: str, model: str, payloads: Payloads, *, timeout_s: float, version: str = ""
    ) -> None:
        import grpc
        from tritonclient.grpc import service_pb2 as pb
        from tritonclient.grpc import service_pb2_grpc

        self.payloads, self.model, self.version, self._timeout_s = payloads, model, version, timeout_s
        self._pb = pb
        limit = 2**31 - 1
        self._channel = grpc.aio.insecure_channel(
            url, options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
        )
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._prebuilt = []
        for req in payloads.requests:
            tensors = [
                pb.ModelInferRequest.InferInputTensor(name=n, datatype=Payloads.datatype(a), shape=a.shape)
                for n, a in req.items()
            ]
            raw = [np.ascontiguousarray(a).tobytes() for a in req.values()]
            outs = [pb.ModelInferRequest.InferRequestedOutputTensor(name=o) for o in payloads.outputs]
            self._prebuilt.append((tensors, raw, outs))
        self._ids = itertools.count()
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._queue: asyncio.Queue[Any] | None = None
        self._reader: asyncio.Task[None] | None = None

    def _open(self) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def requests() -> AsyncIterator[Any]:
            while (item := await queue.get()) is not None:
                yield item

        call = self._stub.ModelStreamInfer(requests())
        self._queue, self._reader = queue, asyncio.get_running_loop().create_task(self._read(call))
        return queue

    async def _read(self, call: Any) -> None:
        import grpc

        failure = "connection"
        try:
            async for msg in call:
                fut = self._pending.pop(msg.infer_response.id, None)
                if fut is None or fut.done():
                    continue
                if msg.error_message:
                    fut.set_result(Reply(error=_stream_error_kind(msg.error_message)))
                else:
                    fut.set_result(Reply(variant=grpc_variant(msg.infer_response)))
        except grpc.aio.AioRpcError as e:
            failure = GRPC_KINDS.get(e.code().name, "connection")
        finally:
            self._queue = None
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_result(Reply(error=failure))
            self._pending.clear()

    async def infer(self, index: int, parameters: dict[str, Any] | None = None) -> Reply:
        queue = self._queue or self._open()
        tensors, raw, outs = self._prebuilt[index % len(self._prebuilt)]
        rid = str(next(self._ids))
        req = self._pb.ModelInferRequest(
            model_name=self.model,
            model_version=self.version,
            id=rid,
            inputs=tensors,
            raw_input_contents=raw,
            outputs=outs,
        )
        if parameters:
            set_parameters(req.parameters, parameters)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        self._pending[rid] = fut
        timer = loop.call_later(self._timeout_s, _expire, fut, self._pending, rid)
        queue.put_nowait(req)
        try:
            return await fut
        finally:
            timer.cancel()

    async def close(self) -> None:
        if self._queue is not None:
            self._queue.put_nowait(None)
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5.0)
            except TimeoutError:
                self._reader.cancel()
        await self._channel.close()


def set_parameters(target: Any, parameters: dict[str, Any]) -> None:
    """Request ``parameters`` into a ``ModelInferRequest.parameters`` map, typed as tritonclient's gRPC
    client types them (``str``, ``bool``, ``int``, ``float``; ``bool`` before ``int``). Written here, not
    borrowed from a server's codec, so that the load tester speaks the protocol as any client does."""
    for key, value in parameters.items():
        param = target[key]
        if isinstance(value, str):
            param.string_param = value
        elif isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        else:
            kind = type(value).__name__
            raise TypeError(f"request parameter {key!r}: {kind} is not str, bool, int or float")


def _expire(fut: asyncio.Future[Reply], pending: dict[str, Any], rid: str) -> None:
    pending.pop(rid, None)
    if not fut.done():
        fut.set_result(Reply(error="timeout"))


def _stream_error_kind(message: str) -> str:
    """A stream error carries only a message (no status); classify by Triton's usual wording."""
    m = message.lower()
    for words, kind in (
        (("failed on a batch", "internal error", "onnxruntime", "backend"), "server"),
        (("queue", "exhausted", "overload", "full"), "overloaded"),
        (("timeout", "timed out", "deadline"), "deadline"),
        (("not found", "unknown model", "unavailable model"), "not_found"),
        (("invalid", "unexpected", "shape", "datatype", "expected"), "invalid"),
    ):
        if any(w in m for w in words):
            return kind
    return "server"
