"""Dynamic batching as Triton does it, seen from outside: requests really batched (Triton's own counters)
with outputs equal to unbatched ones, a full queue refused at once, queue timeouts, priorities."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as tga
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.e2e.support import GatewayProcess, infer_inputs, run_gateway, timed, tiny_batch
from tests.fixtures.tinyrepo import tiny_reference

MODEL = {"model": "tiny.fp32", "version": "1"}


def http_inputs(ids: np.ndarray, mask: np.ndarray) -> list[th.InferInput]:
    return infer_inputs(th, ids, mask)


def grpc_inputs(ids: np.ndarray, mask: np.ndarray) -> list[Any]:
    import tritonclient.grpc as tg

    return infer_inputs(tg, ids, mask)


async def wait_pending(gw: GatewayProcess, count: int, timeout_s: float = 10.0) -> None:
    """Poll Triton's pending-request gauge until ``count`` requests wait in the queue."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(gw.metric, "nv_inference_pending_request_count", **MODEL) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {count} pending requests")


@pytest.fixture(scope="module")
def batching_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from run_gateway(
        tmp_path_factory.mktemp("batching"), variants=("fp32",), classifier=False, max_queue_delay_us=20_000
    )


async def test_concurrent_requests_are_batched_and_equal_unbatched(batching_gateway: GatewayProcess) -> None:
    gw = batching_gateway
    # different sequence lengths, so the batcher must pad and split back
    requests = [tiny_batch(1 + i % 2, 2 + i % 7, seed=100 + i, pad=i % 2) for i in range(32)]
    async with tha.InferenceServerClient(gw.http) as http, tga.InferenceServerClient(gw.grpc) as grpc:
        alone = [await http.infer("tiny.fp32", http_inputs(ids, mask)) for ids, mask in requests[:8]]
        count0 = gw.metric("nv_inference_count", **MODEL)
        exec0 = gw.metric("nv_inference_exec_count", **MODEL)
        calls = [
            http.infer("tiny.fp32", http_inputs(ids, mask))
            if i % 2
            else grpc.infer("tiny.fp32", grpc_inputs(ids, mask))
            for i, (ids, mask) in enumerate(requests)
        ]
        together = await asyncio.gather(*calls)
    rows = gw.metric("nv_inference_count", **MODEL) - count0
    executions = gw.metric("nv_inference_exec_count", **MODEL) - exec0
    assert rows == sum(ids.shape[0] for ids, _ in requests)
    assert executions <= rows / 3, f"{executions} executions for {rows} rows: not batched"
    for (ids, mask), result in zip(requests, together, strict=True):
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )
        assert result.as_numpy("token_embeddings").shape == (*ids.shape, 8)  # split back to its own length
    for single, result in zip(alone, together[: len(alone)], strict=True):  # the first 8 ran alone too
        np.testing.assert_allclose(
            result.as_numpy("embedding"), single.as_numpy("embedding"), rtol=1e-6, atol=1e-7
        )
        np.testing.assert_allclose(
            result.as_numpy("token_embeddings"), single.as_numpy("token_embeddings"), rtol=1e-6, atol=1e-7
        )


@pytest.fixture(scope="module")
def queue_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A queue of 2 that holds requests 1 s for a batch; per-request timeouts allowed."""
    yield from run_gateway(
        tmp_path_factory.mktemp("queue"),
        variants=("fp32",),
        classifier=False,
        max_queue_delay_us=1_000_000,
        adaptive_delay=False,  # the delay holds requests: Triton's rule
        max_queue_size=2,
        allow_timeout_override=True,
    )


async def test_full_queue_is_refused_at_once(queue_gateway: GatewayProcess) -> None:
    gw = queue_gateway
    ids, mask = tiny_batch(1, 4, seed=7)
    async with tha.InferenceServerClient(gw.http) as http, tga.InferenceServerClient(gw.grpc) as grpc:
        first = [
            asyncio.create_task(timed(http.infer("tiny.fp32", http_inputs(ids, mask)))) for _ in range(2)
        ]
        await wait_pending(gw, 2)
        extra = await asyncio.gather(
            *(timed(http.infer("tiny.fp32", http_inputs(ids, mask))) for _ in range(2)),
            timed(grpc.infer("tiny.fp32", grpc_inputs(ids, mask))),
        )
        accepted = await asyncio.gather(*first)
    for elapsed, error in extra:
        assert isinstance(error, InferenceServerException), error
        assert elapsed < 0.6, "a full queue must answer at once, not after the batch delay"
        assert "queue" in error.message()
    assert [e.status() for _, e in extra] == ["429", "429", "StatusCode.RESOURCE_EXHAUSTED"]
    for _, result in accepted:
        assert not isinstance(result, Exception), result
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )
    rejected = await asyncio.to_thread(gw.metric, "nv_inference_request_failure", reason="REJECTED", **MODEL)
    assert rejected == 3


async def test_queue_timeout(queue_gateway: GatewayProcess) -> None:
    gw = queue_gateway
    ids, mask = tiny_batch(1, 3, seed=8)
    async with tha.InferenceServerClient(gw.http) as http, tga.InferenceServerClient(gw.grpc) as grpc:
        (h_elapsed, h_error), (g_elapsed, g_error) = await asyncio.gather(
            timed(http.infer("tiny.fp32", http_inputs(ids, mask), timeout=50_000)),  # microseconds
            timed(grpc.infer("tiny.fp32", grpc_inputs(ids, mask), timeout=50_000)),
        )
        ok_elapsed, ok = await timed(http.infer("tiny.fp32", http_inputs(ids, mask)))
    assert isinstance(h_error, InferenceServerException) and h_error.status() == "504", h_error
    assert (
        isinstance(g_error, InferenceServerException) and g_error.status() == "StatusCode.DEADLINE_EXCEEDED"
    )
    assert h_elapsed < 0.6 and g_elapsed < 0.6  # rejected at its 50 ms timeout, not at the 1 s batch delay
    np.testing.assert_allclose(ok.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)
    assert ok_elapsed >= 0.9  # without a timeout it waited for the batch delay


async def test_priorities(start_gateway: Any) -> None:
    """3 low-priority rows wait; a 2-row high-priority request arrives. A batch holds 4 rows, so one request
    is left for the 1 s delay: by priority it is a low one (first-in first-out would leave the high)."""
    gw = start_gateway(
        variants=("fp32",),
        classifier=False,
        max_batch_size=4,
        max_queue_delay_us=1_000_000,
        adaptive_delay=False,  # the delay holds requests: Triton's rule
        priority_levels=2,
        default_priority_level=2,
    )
    low_ids, low_mask = tiny_batch(1, 4, seed=9)
    high_ids, high_mask = tiny_batch(2, 4, seed=10)
    done: list[tuple[str, float]] = []

    async def run(name: str, coro: Any) -> Any:
        result = await coro
        done.append((name, time.monotonic()))
        return result

    async with tha.InferenceServerClient(gw.http) as http:
        lows = [
            asyncio.create_task(
                run(f"low{i}", http.infer("tiny.fp32", http_inputs(low_ids, low_mask), priority=2))
            )
            for i in range(3)
        ]
        await wait_pending(gw, 3)
        sent = time.monotonic()
        high = await run("high", http.infer("tiny.fp32", http_inputs(high_ids, high_mask), priority=1))
        results = await asyncio.gather(*lows)
    finished = dict(done)
    assert finished["high"] - sent < 0.6, "the high-priority request must not wait for the batch delay"
    late = [name for name, t in done if t - sent >= 0.6]
    assert len(late) == 1 and late[0].startswith("low"), done
    np.testing.assert_allclose(
        high.as_numpy("embedding"), tiny_reference(high_ids, high_mask), rtol=1e-5, atol=1e-6
    )
    for result in results:
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(low_ids, low_mask), rtol=1e-5, atol=1e-6
        )
