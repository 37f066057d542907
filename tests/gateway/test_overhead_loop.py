"""The gateway's event loop (``--event-loop``): uvloop by default where it is installed, asyncio's own when
asked. The real gateway, in a subprocess, answers gRPC (unary and streaming) and HTTP on each."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th

from gateway.main import loop_factory
from loadtest.server import GatewayProcess
from tests.fixtures.tinyrepo import build_tiny_repository, tiny_reference

IDS = np.array([[1, 2, 3, 4], [5, 6, 7, 0]], dtype=np.int64)
MASK = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=np.int64)


def _inputs(module: Any) -> list[Any]:
    inputs = [
        module.InferInput("input_ids", [2, 4], "INT64"),
        module.InferInput("attention_mask", [2, 4], "INT64"),
    ]
    inputs[0].set_data_from_numpy(IDS)
    inputs[1].set_data_from_numpy(MASK)
    return inputs


def _stream_one(client: tg.InferenceServerClient) -> np.ndarray:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put(error or result))
    try:
        client.async_stream_infer("tiny.fp32", _inputs(tg), request_id="s-1")
        got = results.get(timeout=30)
    finally:
        client.stop_stream()
    assert not isinstance(got, Exception), got
    embedding: np.ndarray = got.as_numpy("embedding")
    return embedding


@pytest.mark.parametrize(
    ("setting", "loop"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_the_gateway_serves_grpc_and_http_on_the_loop_it_names(
    tmp_path: Path, setting: str, loop: str
) -> None:
    repo = build_tiny_repository(tmp_path / "repo", classifier=False)
    expected = tiny_reference(IDS, MASK)
    args = ["--log-level", "info", "--event-loop", setting]
    with GatewayProcess(repo, tmp_path / "gateway.log", args, start_timeout_s=60) as gw:
        with tg.InferenceServerClient(gw.grpc) as client:
            unary = client.infer("tiny.fp32", _inputs(tg)).as_numpy("embedding")
            streamed = _stream_one(client)
        with th.InferenceServerClient(gw.http) as client:
            http = client.infer("tiny", _inputs(th)).as_numpy("embedding")
    for got in (unary, streamed, http):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    serving = [line for line in gw.log().splitlines() if "varigate serving" in line]
    assert len(serving) == 1 and serving[0].endswith(f"event loop {loop}"), serving


def test_loop_factory_names_the_loop() -> None:
    import uvloop

    assert loop_factory("asyncio") is None
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
