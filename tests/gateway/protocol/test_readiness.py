"""A server that is live but not ready: one model failed to load (strict readiness, Triton's default).
Health answers carry no body, as Triton's; the other models still serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as tga
import tritonclient.http.aio as tha
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.e2e.support import tiny_batch
from tests.e2e.test_e2e_scheduling import grpc_inputs, http_inputs
from tests.fixtures.tinyrepo import add_version, build_tiny_repository, tiny_reference

from .conftest import grpc_url, http_url, running


@pytest.fixture
def broken_repo(tmp_path: Path) -> Path:
    """clf.fp32's only served version (the latest, 2) is not a model onnxruntime can load."""
    repo = build_tiny_repository(tmp_path / "repo")
    add_version(repo, "clf.fp32", 2, broken=True)
    return repo


async def test_server_not_ready_while_a_model_failed_to_load(broken_repo: Path) -> None:
    ids, mask = tiny_batch(1, 4, seed=2)
    x = np.ones((1, 4), np.float32)
    async with (
        running(broken_repo) as gw,
        httpx.AsyncClient(base_url=f"http://{http_url(gw)}") as raw,
        tha.InferenceServerClient(http_url(gw)) as http,
        grpc.aio.insecure_channel(grpc_url(gw)) as channel,
        tga.InferenceServerClient(grpc_url(gw)) as grpc_,
    ):
        health: dict[str, tuple[int, Any]] = {}
        for path in (
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/clf/ready",
            "/v2/models/tiny/ready",
        ):
            r = await raw.get(path)
            health[path] = (r.status_code, r.json())
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        grpc_health = (
            (await stub.ServerLive(pb.ServerLiveRequest())).live,
            (await stub.ServerReady(pb.ServerReadyRequest())).ready,
            (await stub.ModelReady(pb.ModelReadyRequest(name="clf"))).ready,
            (await stub.ModelReady(pb.ModelReadyRequest(name="tiny"))).ready,
        )
        assert await http.is_server_live() and not await http.is_server_ready()
        refused = await raw.post(
            "/v2/models/clf/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.ravel().tolist()}]},
        )
        with pytest.raises(grpc.aio.AioRpcError) as grpc_refused:
            request = pb.ModelInferRequest(model_name="clf.fp32")
            request.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend(
                x.ravel()
            )
            await stub.ModelInfer(request)
        served = [
            await http.infer("tiny", http_inputs(ids, mask)),
            await grpc_.infer("tiny", grpc_inputs(ids, mask)),
        ]
    clf_status, clf_body = health.pop("/v2/models/clf/ready")
    assert clf_status == 400 and clf_body["ready"] is False and "cannot load" in clf_body["error"]
    assert health == {
        "/v2/health/live": (200, {"live": True}),
        "/v2/health/ready": (503, {"ready": False, "error": "server is not ready"}),
        "/v2/models/tiny/ready": (200, {"name": "tiny", "ready": True}),
    }
    assert grpc_health == (True, False, False, True)
    assert refused.status_code == 503 and "cannot load" in refused.json()["error"]
    assert grpc_refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "cannot load" in (grpc_refused.value.details() or "")
    for result in served:
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )


async def test_without_strict_readiness_the_server_is_ready_anyway(broken_repo: Path) -> None:
    async with (
        running(broken_repo, strict_readiness=False) as gw,
        tha.InferenceServerClient(http_url(gw)) as http,
    ):
        assert await http.is_server_ready() and not await http.is_model_ready("clf")
