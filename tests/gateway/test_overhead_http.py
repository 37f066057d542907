"""The HTTP app tries the inference route first (Starlette matches routes in order, a regex each): every
path must still reach the handler it reached before, the statistics and shared-memory paths included, and
a wrong method on the inference path is still 405. FastAPI's own OpenTelemetry is off (the gateway
configures none); answers are unchanged."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import tritonclient.http.aio as tha

from tests.fixtures.tinyrepo import build_tiny_repository, tiny_reference
from tests.gateway.protocol.conftest import http_url, running

IDS = np.array([[3, 4, 5]], dtype=np.int64)


async def test_every_path_reaches_its_handler(tmp_path: Path) -> None:
    repo = build_tiny_repository(tmp_path / "repo", classifier=False)
    async with running(repo) as gw:
        base = f"http://{http_url(gw)}"
        async with httpx.AsyncClient(base_url=base) as client:
            stats = await client.get("/v2/models/stats")
            versioned_stats = await client.get("/v2/models/tiny.fp32/versions/1/stats")
            metadata = await client.get("/v2/models/tiny.fp32")
            wrong_method = await client.get("/v2/models/tiny.fp32/infer")
            stats_as_model = await client.post("/v2/models/stats/infer", json={"inputs": []})
            shared = await client.get("/v2/systemsharedmemory/status")
            missing = await client.get("/v2/nothing/here")
        async with tha.InferenceServerClient(http_url(gw)) as triton:
            inputs = [
                tha.InferInput("input_ids", [1, 3], "INT64"),
                tha.InferInput("attention_mask", [1, 3], "INT64"),
            ]
            inputs[0].set_data_from_numpy(IDS)
            inputs[1].set_data_from_numpy(np.ones_like(IDS))
            pinned = await triton.infer("tiny.fp32", inputs, model_version="1")
            routed = await triton.infer("tiny", inputs)
    assert stats.status_code == 200 and {m["name"] for m in stats.json()["model_stats"]} >= {"tiny.fp32"}
    assert versioned_stats.status_code == 200 and versioned_stats.json()["model_stats"][0]["version"] == "1"
    assert metadata.status_code == 200 and metadata.json()["name"] == "tiny.fp32"
    assert wrong_method.status_code == 405
    assert stats_as_model.status_code == 404 and "'stats'" in stats_as_model.json()["error"]
    assert shared.status_code == 501 and "shared-memory" in shared.json()["error"]
    assert missing.status_code == 404
    for result in (pinned, routed):
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(IDS, np.ones_like(IDS)), atol=1e-6
        )
    assert pinned.get_response()["model_version"] == "1"
