"""The gRPC adapter over a scripted service, driven by tritonclient.grpc (sync and aio) and raw grpc."""

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
from tritonclient.utils import InferenceServerException

from gateway.protocol.restricted import GRPC_HEADER_PREFIX, Restrictions
from tests.protocol.fakes import FakeService


def _input(name: str, array: np.ndarray, datatype: str) -> tg.InferInput:
    i = tg.InferInput(name, list(array.shape), datatype)
    i.set_data_from_numpy(array)
    return i


async def test_sync_client_infer_and_metadata(grpc_url: str, fake: FakeService) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    s = np.array([b"\x00\xff", "é".encode()], dtype=object)

    def calls() -> dict[str, Any]:
        with tg.InferenceServerClient(grpc_url) as c:
            return {
                "result": c.infer(
                    "echo",
                    [_input("x", x, "FP32"), _input("s", s, "BYTES")],
                    request_id="g1",
                    priority=1,
                    timeout=50,
                    parameters={"slo_ms": 3.5},
                ),
                "live": c.is_server_live(),
                "ready": c.is_server_ready(),
                "model_ready": c.is_model_ready("echo"),
                "other_ready": c.is_model_ready("nope"),
                "server": c.get_server_metadata(as_json=True),
                "model": c.get_model_metadata("echo", as_json=True),
                "config": c.get_model_config("echo", as_json=True),
                "stats": c.get_inference_statistics("echo", as_json=True),
                "index": c.get_model_repository_index(as_json=True),
            }

    got = await asyncio.to_thread(calls)
    result = got["result"]
    np.testing.assert_array_equal(result.as_numpy("OUT_x"), x)
    assert result.as_numpy("OUT_s").tolist() == s.tolist()
    response = result.get_response()
    assert response.id == "g1" and response.model_name == "echo.v"
    assert response.parameters["varigate_variant"].string_param == "echo.v"
    assert fake.calls[-1].parameters == {"priority": 1, "timeout": 50, "slo_ms": 3.5}
    assert fake.calls[-1].protocol == "grpc"
    assert (got["live"], got["ready"], got["model_ready"], got["other_ready"]) == (True, True, True, False)
    assert got["server"]["extensions"] == ["binary_tensor_data", "statistics"]
    assert got["model"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert got["config"]["config"]["dynamic_batching"] == {"max_queue_delay_microseconds": "100"}
    stats = got["stats"]["model_stats"][0]
    assert stats["inference_count"] == "5" and stats["inference_stats"]["success"] == {
        "count": "3",
        "ns": "3000",
    }
    assert got["index"]["models"][1] == {
        "name": "old",
        "version": "1",
        "state": "UNAVAILABLE",
        "reason": "unloaded",
    }


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("InvalidInput", grpc.StatusCode.INVALID_ARGUMENT),
        ("ModelNotFound", grpc.StatusCode.NOT_FOUND),
        ("ModelNotReady", grpc.StatusCode.UNAVAILABLE),
        ("PayloadTooLarge", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("Overloaded", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("DeadlineExceeded", grpc.StatusCode.DEADLINE_EXCEEDED),
        ("PermissionDenied", grpc.StatusCode.PERMISSION_DENIED),
        ("Unsupported", grpc.StatusCode.UNIMPLEMENTED),
        ("Unavailable", grpc.StatusCode.UNAVAILABLE),
        ("BackendError", grpc.StatusCode.INTERNAL),
    ],
)
async def test_errors_use_the_status_table(grpc_url: str, error: str, code: grpc.StatusCode) -> None:
    request = pb.ModelInferRequest(model_name="fail")
    request.parameters["error"].string_param = error
    async with grpc.aio.insecure_channel(grpc_url) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await pb_stub(channel).ModelInfer(request)
    assert e.value.code() == code and e.value.details() == f"scripted {error}"


def pb_stub(channel: grpc.aio.Channel) -> Any:
    from tritonclient.grpc import service_pb2_grpc

    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


async def test_malformed_protobuf_is_invalid_argument(grpc_url: str) -> None:
    async with grpc.aio.insecure_channel(grpc_url) as channel:
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await raw(b"\xff\xff\xff\xff")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed protobuf for /inference.GRPCInferenceService/ModelInfer" in (
            e.value.details() or ""
        )
        ok = await pb_stub(channel).ServerLive(pb.ServerLiveRequest())  # the server goes on
        assert ok.live


async def test_aio_client_errors_and_repository(grpc_url: str, fake: FakeService) -> None:
    async with tga.InferenceServerClient(grpc_url) as client:
        with pytest.raises(InferenceServerException) as e:
            await client.infer("nope", [_input("x", np.zeros(1, np.float32), "FP32")])
        assert e.value.status() == "StatusCode.NOT_FOUND" and "unknown model 'nope'" in e.value.message()
        await client.load_model("echo")
        await client.unload_model("echo", unload_dependents=True)
        with pytest.raises(InferenceServerException) as e:
            await client.load_model("nope")
        assert e.value.status() == "StatusCode.NOT_FOUND"
        result = await client.infer(
            "echo",
            [_input("x", np.ones((1, 2), np.int64), "INT64")],
            outputs=[tg.InferRequestedOutput("OUT_x")],
        )
        assert result.as_numpy("OUT_x").tolist() == [[1, 1]]
    assert fake.repository_calls == [("load", "echo", None), ("unload", "echo", True)]


async def test_stream_runs_requests_concurrently_and_survives_errors(grpc_url: str) -> None:
    async with tga.InferenceServerClient(grpc_url) as client:

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield {
                "model_name": "echo",
                "inputs": [_input("x", np.array([1.0], np.float32), "FP32")],
                "request_id": "slow",
                "parameters": {"delay_ms": 300},
            }
            yield {
                "model_name": "nope",
                "inputs": [_input("x", np.array([2.0], np.float32), "FP32")],
                "request_id": "bad",
            }
            yield {
                "model_name": "echo",
                "inputs": [_input("x", np.array([3.0], np.float32), "FP32")],
                "request_id": "fast",
            }

        seen: list[tuple[str, object]] = []
        async for result, error in client.stream_infer(requests()):
            if error is not None:
                seen.append(("error", error.message()))
            else:
                seen.append((result.get_response().id, result.as_numpy("OUT_x").tolist()))
            if len(seen) == 3:
                break
    assert ("error", "unknown model 'nope'") in seen
    assert ("fast", [3.0]) in seen and ("slow", [1.0]) in seen
    assert seen.index(("fast", [3.0])) < seen.index(("slow", [1.0]))  # concurrent: fast overtook slow


async def test_sync_stream(grpc_url: str) -> None:
    results: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        with tg.InferenceServerClient(grpc_url) as c:
            c.start_stream(callback=lambda result, error: results.put((result, error)))
            for i in range(4):
                c.async_stream_infer(
                    "echo", [_input("x", np.array([float(i)], np.float32), "FP32")], request_id=str(i)
                )
            c.async_stream_infer(
                "fail", [_input("x", np.zeros(1, np.float32), "FP32")], parameters={"error": "Overloaded"}
            )
            got = [results.get(timeout=10) for _ in range(5)]
            c.stop_stream()
            results.put(got)

    await asyncio.to_thread(run)
    got = results.get_nowait()
    values = sorted((r.get_response().id, r.as_numpy("OUT_x").tolist()) for r, e in got if e is None)
    assert values == [(str(i), [float(i)]) for i in range(4)]
    assert [e.message() for r, e in got if e is not None] == ["scripted Overloaded"]


async def test_health_service(grpc_url: str) -> None:
    async with grpc.aio.insecure_channel(grpc_url) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_message_size_limit(grpc_url: str) -> None:
    big = np.zeros(300_000, np.float32)  # 1.2 MB against a 1 MiB limit
    async with tga.InferenceServerClient(grpc_url) as client:
        with pytest.raises(InferenceServerException) as e:
            await client.infer("echo", [_input("x", big, "FP32")])
        assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        ok = await client.infer("echo", [_input("x", big[:10], "FP32")])
        assert ok.as_numpy("OUT_x").shape == (10,)


class TestRestricted:
    @pytest.fixture
    def grpc_restrictions(self) -> Restrictions:
        return Restrictions.parse(
            ["model-repository,statistics:admin-key=s3cret"],
            header_prefix=GRPC_HEADER_PREFIX,
            noun="protocol",
        )

    async def test_admin_rpcs_need_the_metadata(self, grpc_url: str, fake: FakeService) -> None:
        admin = {"triton-grpc-protocol-admin-key": "s3cret"}
        async with tga.InferenceServerClient(grpc_url) as client:
            for call in (
                client.load_model("echo"),
                client.get_inference_statistics(),
                client.get_model_repository_index(),
            ):
                with pytest.raises(InferenceServerException) as e:
                    await call
                assert e.value.status() == "StatusCode.PERMISSION_DENIED"
                assert (
                    e.value.message()
                    == "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'"
                )
            with pytest.raises(InferenceServerException):
                await client.load_model("echo", headers={"triton-grpc-protocol-admin-key": "wrong"})
            await client.load_model("echo", headers=admin)
            stats = await client.get_inference_statistics(headers=admin)
            assert stats.model_stats[0].name == "echo.v"
            result = await client.infer(
                "echo", [_input("x", np.ones(1, np.float32), "FP32")]
            )  # not restricted
            assert result.as_numpy("OUT_x").tolist() == [1.0]
        assert fake.repository_calls == [("load", "echo", None)]


async def test_malformed_message_in_a_stream_is_answered_in_the_stream(grpc_url: str) -> None:
    good = pb.ModelInferRequest(model_name="echo", id="ok")
    good.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(7)
    async with grpc.aio.insecure_channel(grpc_url) as channel:
        stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        call = stream(iter([b"\xff\xff\xff", good.SerializeToString()]))
        replies = [reply async for reply in call]
    errors = [r.error_message for r in replies if r.error_message]
    answers = [r.infer_response for r in replies if not r.error_message]
    assert len(errors) == 1 and "malformed protobuf" in errors[0]
    assert [a.id for a in answers] == ["ok"] and answers[0].raw_output_contents[0] == b"\x07\x00\x00\x00"
