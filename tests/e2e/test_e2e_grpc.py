"""The real gateway over gRPC, as a Triton user drives it: tritonclient.grpc (sync and asyncio, unary and
streaming), grpc.health.v1, and raw stubs for what a client library would never send."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tga
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.e2e.support import GatewayProcess, infer_inputs, tiny_batch
from tests.fixtures.tinyrepo import EMBED_DIM, tiny_reference


def tiny_inputs(ids: np.ndarray, mask: np.ndarray) -> list[tg.InferInput]:
    return infer_inputs(tg, ids, mask)


def test_sync_client(gateway: GatewayProcess) -> None:
    ids, mask = tiny_batch(2, 6, seed=5, pad=1)
    with tg.InferenceServerClient(gateway.grpc) as c:
        assert c.is_server_live() and c.is_server_ready()
        assert (
            c.is_model_ready("tiny") and c.is_model_ready("tiny.int8", "1") and not c.is_model_ready("nope")
        )
        meta = c.get_server_metadata(as_json=True)
        assert meta["name"] == "varigate" and "binary_tensor_data" in meta["extensions"]
        model = c.get_model_metadata("tiny.fp32", as_json=True)
        assert model["inputs"][0] == {"name": "input_ids", "datatype": "INT64", "shape": ["-1", "-1"]}
        config = c.get_model_config("tiny.fp32").config
        assert config.name == "tiny.fp32" and config.max_batch_size == 8
        assert config.dynamic_batching.max_queue_delay_microseconds == 2000
        result = c.infer("tiny", tiny_inputs(ids, mask), request_id="g-1")
        pinned = c.infer("tiny.int8", tiny_inputs(ids, mask), outputs=[tg.InferRequestedOutput("embedding")])
        stats = c.get_inference_statistics("tiny.int8", as_json=True)["model_stats"][0]
        index = {m["name"]: m for m in c.get_model_repository_index(as_json=True)["models"]}
    response = result.get_response()
    assert response.id == "g-1" and response.model_name == "tiny.fp32"
    assert response.parameters["varigate_variant"].string_param == "tiny.fp32"
    np.testing.assert_allclose(result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)
    assert result.as_numpy("token_embeddings").shape == (2, 6, EMBED_DIM)
    assert [o.name for o in pinned.get_response().outputs] == ["embedding"]
    np.testing.assert_allclose(
        pinned.as_numpy("embedding"), tiny_reference(ids, mask, "int8"), rtol=1e-5, atol=1e-6
    )
    assert int(stats["inference_count"]) >= 2
    assert index["tiny.int8"]["state"] == "READY" and index["clf.fp32"]["version"] == "1"


def _typed_request(ids: np.ndarray, mask: np.ndarray) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="tiny.fp32", id="typed")
    for name, arr in (("input_ids", ids), ("attention_mask", mask)):
        t = request.inputs.add(name=name, datatype="INT64", shape=list(arr.shape))
        t.contents.int64_contents.extend(arr.ravel().tolist())
    return request


async def test_typed_contents_and_bad_requests(gateway: GatewayProcess) -> None:
    ids, mask = tiny_batch(1, 4, seed=6)
    async with grpc.aio.insecure_channel(gateway.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        reply = await stub.ModelInfer(_typed_request(ids, mask))
        assert reply.id == "typed" and len(reply.raw_output_contents) == 2
        got = np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(1, EMBED_DIM)
        np.testing.assert_allclose(got, tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)

        async def code_of(request: object, method: str = "ModelInfer") -> tuple[grpc.StatusCode, str]:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                if isinstance(request, bytes):
                    raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                        f"/inference.GRPCInferenceService/{method}"
                    )
                    await raw(request)
                else:
                    await getattr(stub, method)(request)
            return e.value.code(), e.value.details() or ""

        both = _typed_request(ids, mask)
        both.raw_input_contents.extend([ids.tobytes(), mask.tobytes()])
        code, msg = await code_of(both)
        assert (
            code == grpc.StatusCode.INVALID_ARGUMENT
            and "'input_ids' sets 'contents' while the request uses raw_input_contents" in msg
        )
        short = pb.ModelInferRequest(model_name="tiny.fp32")
        short.inputs.add(name="input_ids", datatype="INT64", shape=[1, 4])
        short.inputs.add(name="attention_mask", datatype="INT64", shape=[1, 4])
        short.raw_input_contents.extend([ids.tobytes(), mask.tobytes()[:8]])
        code, msg = await code_of(short)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "'attention_mask': raw data has 8 bytes" in msg
        code, msg = await code_of(b"\x0a\xff\xff")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed protobuf" in msg
        wrong_type = pb.ModelInferRequest(model_name="tiny.fp32")
        for name in ("input_ids", "attention_mask"):
            wrong_type.inputs.add(name=name, datatype="INT32", shape=[1, 1]).contents.int_contents.append(1)
        code, msg = await code_of(wrong_type)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "expected datatype INT64, got INT32" in msg
        code, msg = await code_of(pb.ModelInferRequest(model_name="nope"))
        assert code == grpc.StatusCode.NOT_FOUND and "'nope'" in msg
        code, msg = await code_of(pb.ModelMetadataRequest(name="nope"), "ModelMetadata")
        assert code == grpc.StatusCode.NOT_FOUND
        again = await stub.ModelInfer(_typed_request(ids, mask))  # the gateway goes on
        assert again.id == "typed"


async def test_health_service(gateway: GatewayProcess) -> None:
    async with grpc.aio.insecure_channel(gateway.grpc) as channel:
        # Any: the grpc_health stubs declare HealthStub without its generated methods
        health: Any = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_aio_stream_with_an_error_in_the_middle(gateway: GatewayProcess) -> None:
    batches = [tiny_batch(1, 3 + i, seed=20 + i) for i in range(6)]

    async def requests() -> AsyncIterator[dict[str, Any]]:
        for i, (ids, mask) in enumerate(batches):
            yield {"model_name": "tiny.fp32", "inputs": tiny_inputs(ids, mask), "request_id": str(i)}
            if i == 2:
                yield {"model_name": "tiny.fp32", "inputs": tiny_inputs(ids, mask)[:1], "request_id": "bad"}

    results: dict[str, np.ndarray] = {}
    errors: list[str] = []
    async with tga.InferenceServerClient(gateway.grpc) as client:
        async for result, error in client.stream_infer(requests()):
            if error is not None:
                errors.append(error.message())
            else:
                results[result.get_response().id] = result.as_numpy("embedding")
            if len(results) + len(errors) == len(batches) + 1:
                break
    assert len(errors) == 1 and "missing ['attention_mask']" in errors[0]
    assert sorted(results) == [str(i) for i in range(6)]
    for i, (ids, mask) in enumerate(batches):
        np.testing.assert_allclose(results[str(i)], tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)


async def test_sync_stream(gateway: GatewayProcess) -> None:
    got: queue.Queue[Any] = queue.Queue()
    batches = [tiny_batch(2, 4, seed=40 + i) for i in range(5)]

    def run() -> list[Any]:
        with tg.InferenceServerClient(gateway.grpc) as c:
            c.start_stream(callback=lambda result, error: got.put((result, error)))
            for i, (ids, mask) in enumerate(batches):
                c.async_stream_infer("tiny", tiny_inputs(ids, mask), request_id=str(i))
            out = [got.get(timeout=30) for _ in batches]
            c.stop_stream()
        return out

    out = await asyncio.to_thread(run)
    assert all(e is None for _, e in out)
    by_id = {r.get_response().id: r for r, _ in out}
    for i, (ids, mask) in enumerate(batches):
        np.testing.assert_allclose(
            by_id[str(i)].as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )


def test_message_over_the_limit(gateway: GatewayProcess) -> None:
    ids = np.ones((1, 140_000), np.int64)
    with tg.InferenceServerClient(gateway.grpc) as c:
        with pytest.raises(InferenceServerException) as e:
            c.infer("tiny", tiny_inputs(ids, ids))
        assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        ok = c.infer("tiny", tiny_inputs(ids[:, :10], ids[:, :10]))
    assert ok.as_numpy("embedding").shape == (1, EMBED_DIM)
