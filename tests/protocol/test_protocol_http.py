"""The HTTP adapter over a scripted service, driven by tritonclient.http (sync and aio) and raw httpx."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.protocol.fakes import FakeService


def _input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> th.InferInput:
    i = th.InferInput(name, list(array.shape), datatype)
    i.set_data_from_numpy(array, binary_data=binary)
    return i


async def test_sync_client_binary_json_and_bytes(http_url: str, fake: FakeService) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    s = np.array([["héllo".encode(), b"\x00\xff"]], dtype=object)

    def call() -> th.InferResult:
        with th.InferenceServerClient(http_url) as client:
            return client.infer(
                "echo",
                [
                    _input("x", x, "FP32"),
                    _input("s", s, "BYTES"),
                    _input("j", np.array([1, 2], np.int64), "INT64", False),
                ],
                request_id="r-1",
                priority=2,
                timeout=1000,
                parameters={"slo_ms": 7},
            )

    result = await asyncio.to_thread(call)
    np.testing.assert_array_equal(result.as_numpy("OUT_x"), x)
    assert result.as_numpy("OUT_s").tolist() == s.tolist()
    assert result.as_numpy("OUT_j").tolist() == [1, 2]
    doc = result.get_response()
    assert doc["id"] == "r-1" and doc["model_name"] == "echo.v"
    assert doc["parameters"] == {"varigate_variant": "echo.v"}
    request = fake.calls[-1]
    assert request.parameters == {"priority": 2, "timeout": 1000, "slo_ms": 7}
    assert request.protocol == "http"


async def test_aio_client_requested_outputs_json_and_binary(http_url: str) -> None:
    x = np.arange(4, dtype=np.int32).reshape(1, 4)
    async with tha.InferenceServerClient(http_url) as client:
        result = await client.infer(
            "echo",
            [_input("x", x, "INT32"), _input("y", x * 2, "INT32")],
            model_version="1",
            outputs=[th.InferRequestedOutput("OUT_x", binary_data=False), th.InferRequestedOutput("OUT_y")],
        )
        assert await client.is_server_live() and await client.is_server_ready()
        assert await client.is_model_ready("echo") and not await client.is_model_ready("nope")
    outputs = {o["name"]: o for o in result.get_response()["outputs"]}
    assert outputs["OUT_x"]["data"] == [0, 1, 2, 3]
    assert outputs["OUT_y"]["parameters"] == {"binary_data_size": 16}
    np.testing.assert_array_equal(result.as_numpy("OUT_y"), x * 2)


async def test_metadata_config_stats_and_repository(http_url: str, fake: FakeService) -> None:
    def calls() -> dict[str, Any]:
        with th.InferenceServerClient(http_url) as c:
            out = {
                "server": c.get_server_metadata(),
                "model": c.get_model_metadata("echo"),
                "versioned": c.get_model_metadata("echo", "1"),
                "config": c.get_model_config("echo"),
                "stats": c.get_inference_statistics(),
                "model_stats": c.get_inference_statistics("echo"),
                "index": c.get_model_repository_index(),
            }
            c.load_model("echo")
            c.unload_model("echo", unload_dependents=True)
            return out

    got = await asyncio.to_thread(calls)
    assert got["server"] == {
        "name": "varigate",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data", "statistics"],
    }
    assert got["model"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert got["model"] == got["versioned"] and got["model"]["parameters"] == {"logical_model": "echo"}
    assert got["config"]["max_batch_size"] == 8
    stats = got["stats"]["model_stats"][0]
    assert stats["inference_count"] == 5 and stats["execution_count"] == 2
    assert stats["inference_stats"]["success"] == {"count": 3, "ns": 3000}
    assert got["model_stats"] == got["stats"]
    assert got["index"] == [
        {"name": "echo.v", "version": "1", "state": "READY"},
        {"name": "old", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
    ]
    assert fake.repository_calls == [("load", "echo", None), ("unload", "echo", True)]
    async with httpx.AsyncClient(base_url=f"http://{http_url}") as raw:
        ready_only = await raw.post("/v2/repository/index", json={"ready": True})
        assert ready_only.json() == [{"name": "echo.v", "version": "1", "state": "READY"}]
        bad = await raw.post("/v2/repository/index", json={"ready": "maybe"})
        assert bad.status_code == 400 and "ready" in bad.json()["error"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("InvalidInput", 400),
        ("ModelNotFound", 404),
        ("ModelNotReady", 503),
        ("PayloadTooLarge", 413),
        ("Overloaded", 429),
        ("DeadlineExceeded", 504),
        ("PermissionDenied", 403),
        ("Unsupported", 501),
        ("Unavailable", 503),
        ("BackendError", 500),
    ],
)
async def test_errors_use_the_status_table(http_url: str, error: str, status: int) -> None:
    body = {"inputs": [], "parameters": {"error": error}}
    async with httpx.AsyncClient(base_url=f"http://{http_url}") as raw:
        r = await raw.post("/v2/models/fail/infer", json=body)
    assert r.status_code == status
    assert r.json() == {"error": f"scripted {error}"}


async def test_tritonclient_sees_the_error_message(http_url: str) -> None:
    async with tha.InferenceServerClient(http_url) as client:
        with pytest.raises(InferenceServerException) as e:
            await client.infer("nope", [_input("x", np.zeros(1, np.float32), "FP32")])
        assert e.value.status() == "404" and "unknown model 'nope'" in e.value.message()
        with pytest.raises(InferenceServerException) as e:
            await client.get_model_metadata("nope")
        assert e.value.status() == "404"


async def test_malformed_bodies_and_other_requests_unaffected(http_url: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{http_url}") as raw:
        bad = await raw.post("/v2/models/echo/infer", content=b'{"inputs": [')
        assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
        head = orjson.dumps(
            {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
                ]
            }
        )
        short = await raw.post(
            "/v2/models/echo/infer",
            content=head + b"\0" * 4,
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
        assert short.status_code == 400 and "binary_data_size 8 exceeds the 4 bytes" in short.json()["error"]
        good = await raw.post(
            "/v2/models/echo/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [2.5]}]},
        )
        assert good.status_code == 200
        assert good.headers["varigate-variant"] == "echo.v"
        assert good.headers["content-type"] == "application/json"
        assert good.json()["outputs"] == [{"name": "OUT_x", "datatype": "FP32", "shape": [1], "data": [2.5]}]
        unknown = await raw.get("/v2/nothing/here")
        assert unknown.status_code == 404 and "/v2/nothing/here" in unknown.json()["error"]
        shm = await raw.get("/v2/systemsharedmemory/status")
        assert shm.status_code == 501 and "shared-memory" in shm.json()["error"]


async def test_binary_response_headers(http_url: str) -> None:
    x = np.arange(3, dtype=np.float64)
    head = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [3], "parameters": {"binary_data_size": 24}}
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    async with httpx.AsyncClient(base_url=f"http://{http_url}") as raw:
        r = await raw.post(
            "/v2/models/echo/versions/1/infer",
            content=head + x.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["inference-header-content-length"])
    doc = orjson.loads(r.content[:n])
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 24}
    np.testing.assert_array_equal(np.frombuffer(r.content[n:], np.float64), x)


async def test_body_limit_gives_413_and_the_server_goes_on(http_url: str) -> None:
    big = np.zeros(300_000, np.float32)  # 1.2 MB against a 1 MiB limit

    def call(data: np.ndarray) -> th.InferResult:
        with th.InferenceServerClient(http_url) as client:
            return client.infer("echo", [_input("x", data, "FP32")])

    with pytest.raises(InferenceServerException) as e:
        await asyncio.to_thread(call, big)
    assert e.value.status() == "413" and "exceeds the limit of 1048576 bytes" in e.value.message()
    ok = await asyncio.to_thread(call, big[:1000])
    assert ok.as_numpy("OUT_x").shape == (1000,)
    async with httpx.AsyncClient(base_url=f"http://{http_url}") as raw:
        bomb = gzip.compress(b" " * (2 << 20))  # small on the wire, 2 MiB inflated
        r = await raw.post("/v2/models/echo/infer", content=bomb, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decompressed" in r.json()["error"]


async def test_compressed_requests(http_url: str) -> None:
    x = np.arange(5, dtype=np.int16)

    def call(algorithm: str) -> th.InferResult:
        with th.InferenceServerClient(http_url) as client:
            return client.infer("echo", [_input("x", x, "INT16")], request_compression_algorithm=algorithm)

    for algorithm in ("gzip", "deflate"):
        result = await asyncio.to_thread(call, algorithm)
        np.testing.assert_array_equal(result.as_numpy("OUT_x"), x)


async def test_server_not_ready(http_url: str, fake: FakeService) -> None:
    fake.ready = False
    async with tha.InferenceServerClient(http_url) as client:
        assert await client.is_server_live()
        assert not await client.is_server_ready()
    async with httpx.AsyncClient(base_url=f"http://{http_url}") as raw:
        r = await raw.get("/v2/health/ready")
        assert (r.status_code, r.content) == (503, b"")  # no body, as Triton
        r = await raw.get("/v2/models/other/ready")
        assert (r.status_code, r.content) == (503, b"")
