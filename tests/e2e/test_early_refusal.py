"""Refused early instead of late: a request the queue would hold past its deadline (gRPC deadline, or the
gateway's default queue timeout) gets 429 / RESOURCE_EXHAUSTED at once, and an HTTP request whose client
has gone leaves the queue instead of taking a batch for an answer nobody reads.

The tiny embedder is made slow (``tests.gateway.policy.slow:SlowBackend``: 100 ms a batch of at most 2,
one batch at a time) so that the queue's wait is long and known; the sleep costs no CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as tga
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.e2e.support import GatewayProcess, infer_inputs, run_gateway, timed, tiny_batch
from tests.fixtures.tinyrepo import tiny_reference

MODEL = "tiny.fp32"


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    args = ["--backend", "tests.gateway.policy.slow:SlowBackend", "--default-queue-timeout-ms", "400"]
    yield from run_gateway(
        tmp_path_factory.mktemp("early"),
        [*args, "--shadow-fraction", "0"],
        variants=("fp32",),
        classifier=False,
        max_batch_size=2,
        max_queue_delay_us=0,
        delays_ms=(("fp32", 100.0, 0.0),),
    )


async def _warm(gw: GatewayProcess) -> None:
    """A few batches, so the gateway has learnt the backend's time per row."""
    ids, mask = tiny_batch(1, 4, seed=1)
    async with tga.InferenceServerClient(gw.grpc) as g:
        for _ in range(3):
            await g.infer(MODEL, infer_inputs(tga, ids, mask))


async def test_a_request_that_cannot_make_its_deadline_is_refused_at_once(slow: GatewayProcess) -> None:
    await _warm(slow)
    ids, mask = tiny_batch(1, 4, seed=2)
    async with tga.InferenceServerClient(slow.grpc) as g:
        # 8 requests with room to wait: 4 batches, about 400 ms of queue
        backlog = [
            asyncio.create_task(timed(g.infer(MODEL, infer_inputs(tga, ids, mask), client_timeout=10)))
            for _ in range(8)
        ]
        await asyncio.sleep(0.05)
        elapsed, refused = await timed(g.infer(MODEL, infer_inputs(tga, ids, mask), client_timeout=0.15))
        done = await asyncio.gather(*backlog)
    assert isinstance(refused, InferenceServerException), refused
    assert refused.status() == "StatusCode.RESOURCE_EXHAUSTED", refused
    assert "refused early" in refused.message() and "deadline" in refused.message()
    assert elapsed < 0.1, f"refused after {elapsed:.3f} s, not at once"
    served = [r for _, r in done if not isinstance(r, Exception)]
    assert len(served) >= 6  # the backlog itself fits the default queue timeout (400 ms + slack)
    for r in served:
        np.testing.assert_allclose(r.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5)


async def test_default_queue_timeout_bounds_the_wait_of_requests_without_a_deadline(
    slow: GatewayProcess,
) -> None:
    await _warm(slow)
    ids, mask = tiny_batch(1, 4, seed=3)
    async with tha.InferenceServerClient(slow.http) as h:
        results = await asyncio.gather(
            *(timed(h.infer(MODEL, infer_inputs(tha, ids, mask))) for _ in range(30))
        )
    refused = [(t, r) for t, r in results if isinstance(r, InferenceServerException)]
    served = [(t, r) for t, r in results if not isinstance(r, Exception)]
    assert served and refused, "30 requests at once against ~20 requests/s: some served, some refused"
    assert {r.status() for _, r in refused} <= {"429", "504"}
    early = [t for t, r in refused if r.status() == "429"]
    assert len(early) >= len(refused) // 2 and max(early) < 0.2  # most are told no at once
    assert max(t for t, _ in served) < 0.4 + 0.1 + 0.3  # the timeout, one batch, slack
    for _, r in served:
        np.testing.assert_allclose(r.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5)


def _executed(gw: GatewayProcess) -> float:
    return gw.metric("nv_inference_count", model=MODEL)


async def test_requests_whose_http_client_left_are_not_run(slow: GatewayProcess) -> None:
    await _warm(slow)
    ids, mask = tiny_batch(1, 4, seed=4)
    before = await asyncio.to_thread(_executed, slow)
    body = {
        "inputs": [
            {"name": "input_ids", "datatype": "INT64", "shape": [1, 4], "data": ids.ravel().tolist()},
            {"name": "attention_mask", "datatype": "INT64", "shape": [1, 4], "data": mask.ravel().tolist()},
        ]
    }
    url = f"http://{slow.http}/v2/models/{MODEL}/infer"
    async with httpx.AsyncClient() as client:
        gone = await asyncio.gather(
            *(client.post(url, json=body, timeout=0.05) for _ in range(6)), return_exceptions=True
        )
    left = [g for g in gone if isinstance(g, httpx.TimeoutException)]
    others = [g for g in gone if not isinstance(g, httpx.TimeoutException)]
    assert len(left) >= 4 and all(isinstance(g, httpx.Response) and g.status_code == 429 for g in others)
    await asyncio.sleep(1.0)  # what was still queued would have run by now
    ran = await asyncio.to_thread(_executed, slow) - before
    assert ran <= 2, f"{ran:.0f} of 6 abandoned requests were run (at most the first batch may be)"
    async with httpx.AsyncClient() as client:
        ok = await client.post(url, json=body, timeout=5)
    assert ok.status_code == 200
    np.testing.assert_allclose(ok.json()["outputs"][0]["data"], tiny_reference(ids, mask).ravel(), rtol=1e-5)
