"""Dynamic batching through the service, on real onnxruntime: equality with unbatched results, padding,
that batching happens, queue policy (full queue, timeouts, DELAY), priorities, and failure isolation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gateway.core.errors import BackendError, DeadlineExceeded, InvalidInput, Overloaded, Unavailable
from gateway.core.types import Datatype, InferRequest, InferResponse, Tensor
from tests.fixtures.tinyrepo import POISON_ID, tiny_reference

from .conftest import Gate, random_ids, serving, tiny_request


def outputs(response: InferResponse) -> dict[str, np.ndarray]:
    return {t.name: t.data for t in response.outputs}


async def test_batched_outputs_equal_unbatched_with_padding(build: Callable[..., Path]) -> None:
    repo = build(max_queue_delay_us=20_000)
    rng = np.random.default_rng(0)
    requests = []
    for i in range(24):
        rows, length = 1 + i % 2, 1 + (i * 5) % 13  # lengths 1..13: every batch needs padding
        ids = random_ids(rng, rows, length)
        mask = np.ones_like(ids)
        mask[:, length - (i % 3) :] = 0  # some requests carry their own padding too
        requests.append((ids, mask))
    async with serving(repo) as service:
        for variant in ("tiny.fp32", "tiny.int8"):
            alone = [outputs(await service.infer(tiny_request(variant, ids, mask))) for ids, mask in requests]
            before = service.statistics(variant)[0]
            together = await asyncio.gather(
                *(service.infer(tiny_request(variant, i, m)) for i, m in requests)
            )
            after = service.statistics(variant)[0]
            assert after.execution_count - before.execution_count < len(requests) / 2, (
                "requests were not batched"
            )
            for (ids, mask), single, batched in zip(requests, alone, together, strict=True):
                got = outputs(batched)
                np.testing.assert_allclose(got["embedding"], single["embedding"], rtol=0, atol=1e-6)
                np.testing.assert_allclose(
                    got["token_embeddings"], single["token_embeddings"], rtol=0, atol=1e-6
                )
                assert got["token_embeddings"].shape == (*ids.shape, 8)  # cut back to the request's length
                np.testing.assert_allclose(
                    got["embedding"], tiny_reference(ids, mask, variant[5:]), atol=1e-5
                )


async def test_batching_happens_under_concurrency(tiny_repo: Path) -> None:
    rng = np.random.default_rng(1)
    async with serving(tiny_repo) as service:
        await asyncio.gather(
            *(service.infer(tiny_request("tiny.fp32", random_ids(rng, 1, 6))) for _ in range(64))
        )
        stats = service.statistics("tiny.fp32")[0]
    assert stats.inference_count == 64
    assert stats.success.count == 64
    assert stats.execution_count <= 64 // 4, stats
    assert max(b.batch_size for b in stats.batch_stats) == 8  # max_batch_size rows


async def test_rows_count_against_max_batch_size(build: Callable[..., Path]) -> None:
    repo = build(max_batch_size=4, max_queue_delay_us=50_000)
    rng = np.random.default_rng(2)
    async with serving(repo) as service:
        responses = await asyncio.gather(
            *(service.infer(tiny_request("tiny.fp32", random_ids(rng, 3, 4))) for _ in range(4))
        )
        with pytest.raises(InvalidInput, match=r"batch-size must be in \[1, 4\].*got 5"):
            await service.infer(tiny_request("tiny.fp32", random_ids(rng, 5, 4)))
        stats = service.statistics("tiny.fp32")[0]
    assert all(r.outputs[0].shape == (3, 8) for r in responses)
    assert stats.execution_count == 4  # 3 + 3 rows never fit in 4
    assert {b.batch_size for b in stats.batch_stats} == {3}


async def test_preferred_batch_size_is_cut_when_delay_expires(build: Callable[..., Path], gate: Gate) -> None:
    repo = build(max_batch_size=8, preferred_batch_sizes=(2, 4), max_queue_delay_us=1000)
    async with serving(repo, **gate.options) as service:
        first = asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[1, 2]])))
        await gate.entered()
        rest = [asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[3, 4]]))) for _ in range(3)]
        await asyncio.sleep(0)  # the three enqueue behind the held batch
        gate.open()
        await asyncio.gather(first, *rest)
        sizes = {b.batch_size: b.compute_infer.count for b in service.statistics("tiny.fp32")[0].batch_stats}
    assert sizes == {1: 2, 2: 1}  # 1; then 3 queued, 4 never comes: the preferred 2 is cut; then the last 1


async def test_queue_full_is_refused_at_once(build: Callable[..., Path], gate: Gate) -> None:
    repo = build(max_batch_size=1, max_queue_size=2)
    async with serving(repo, **gate.options) as service:
        running = asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[1]])))
        await gate.entered()
        queued = [asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[2]]))) for _ in range(2)]
        await asyncio.sleep(0)  # both enqueue
        started = time.monotonic()
        with pytest.raises(
            Overloaded, match=r"'tiny.fp32' queue is full: 2 requests queued.*max_queue_size 2"
        ):
            await service.infer(tiny_request("tiny.fp32", [[3]]))
        assert time.monotonic() - started < 0.5
        gate.open()
        for response in await asyncio.gather(running, *queued):
            assert response.model_name == "tiny.fp32"
        stats = service.statistics("tiny.fp32")[0]
    assert (stats.success.count, stats.fail.count) == (3, 1)


async def test_queue_timeout_rejects(build: Callable[..., Path], gate: Gate) -> None:
    repo = build(max_batch_size=1, default_timeout_us=50_000)
    async with serving(repo, **gate.options) as service:
        running = asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[1]])))
        await gate.entered()
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"'tiny.fp32' timed out after 50000 us in the queue"):
            await service.infer(tiny_request("tiny.fp32", [[2]]))
        assert 0.04 < time.monotonic() - started < 2.0
        gate.open()
        await running  # the request already executing is not subject to the queue timeout


@pytest.mark.parametrize("allow", [True, False])
async def test_request_timeout_overrides_only_when_allowed(
    build: Callable[..., Path], gate: Gate, allow: bool
) -> None:
    repo = build(max_batch_size=1, allow_timeout_override=allow)
    async with serving(repo, **gate.options) as service:
        running = asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[1]])))
        await gate.entered()
        timed = asyncio.ensure_future(
            service.infer(tiny_request("tiny.fp32", [[2]], parameters={"timeout": 20_000}))
        )
        done, _ = await asyncio.wait([timed], timeout=0.3)
        if allow:
            assert timed in done
            with pytest.raises(DeadlineExceeded):
                timed.result()
        else:
            assert not done  # the request's timeout is ignored: it still waits
        gate.open()
        await running
        if not allow:
            assert (await timed).model_name == "tiny.fp32"


async def test_delayed_requests_go_after_the_others(build: Callable[..., Path], gate: Gate) -> None:
    repo = build(max_batch_size=1, timeout_action="DELAY", allow_timeout_override=True)
    order: list[str] = []

    async def call(tag: str, **parameters: int) -> None:
        await service.infer(tiny_request("tiny.fp32", [[1]], parameters=parameters))
        order.append(tag)

    async with serving(repo, **gate.options) as service:
        running = asyncio.ensure_future(call("running"))
        await gate.entered()
        late = asyncio.ensure_future(call("delayed", timeout=10_000))
        await asyncio.sleep(0)
        on_time = asyncio.ensure_future(call("on_time"))
        await asyncio.sleep(0.05)  # the first queued request passes its timeout: DELAY, not REJECT
        gate.open()
        await asyncio.gather(running, late, on_time)
    assert order == ["running", "on_time", "delayed"]


async def test_higher_priority_is_served_first(build: Callable[..., Path], gate: Gate) -> None:
    repo = build(max_batch_size=1, priority_levels=2, default_priority_level=2)
    order: list[str] = []

    async def call(tag: str, priority: int | None) -> None:
        parameters = {} if priority is None else {"priority": priority}
        await service.infer(tiny_request("tiny.fp32", [[1]], parameters=parameters))
        order.append(tag)

    async with serving(repo, **gate.options) as service:
        tasks = [asyncio.ensure_future(call("running", 2))]
        await gate.entered()
        for tag, priority in (("low-a", None), ("low-b", 2), ("high", 1), ("out-of-range", 9)):
            tasks.append(asyncio.ensure_future(call(tag, priority)))
            await asyncio.sleep(0)
        gate.open()
        await asyncio.gather(*tasks)
    assert order == ["running", "high", "low-a", "low-b", "out-of-range"]


async def test_a_bad_request_never_fails_the_others(tiny_repo: Path) -> None:
    rng = np.random.default_rng(3)
    good = [tiny_request("tiny.fp32", random_ids(rng, 1, 5)) for _ in range(8)]
    ids = np.ones((1, 5), dtype=np.float32)
    bad = InferRequest("tiny.fp32", [Tensor("input_ids", Datatype.FP32, ids.shape, ids), good[0].inputs[1]])
    async with serving(tiny_repo) as service:
        results = await asyncio.gather(
            *(service.infer(r) for r in [*good[:4], bad, *good[4:]]), return_exceptions=True
        )
    assert isinstance(results[4], InvalidInput)
    for request, response in zip(good, [*results[:4], *results[5:]], strict=True):
        assert isinstance(response, InferResponse)
        ids, mask = request.inputs[0].data, request.inputs[1].data
        np.testing.assert_allclose(outputs(response)["embedding"], tiny_reference(ids, mask), atol=1e-5)


async def test_a_backend_failure_fails_only_its_batch(tiny_repo: Path, gate: Gate) -> None:
    async with serving(tiny_repo, **gate.options) as service:
        first = asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[1, 2]])))
        await gate.entered()
        same_batch = [
            asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", ids)))
            for ids in ([[3, 4]], [[POISON_ID, 1]])
        ]
        await asyncio.sleep(0)
        gate.open()
        assert (await first).model_name == "tiny.fp32"
        for task in same_batch:
            with pytest.raises(BackendError, match=r"'tiny.fp32' version 1 failed on a batch of 2 rows"):
                await task
        after = await service.infer(tiny_request("tiny.fp32", [[3, 4]]))
        np.testing.assert_allclose(
            outputs(after)["embedding"], tiny_reference(np.array([[3, 4]]), np.ones((1, 2))), atol=1e-5
        )
        stats = service.statistics("tiny.fp32")[0]
    assert (stats.success.count, stats.fail.count) == (2, 2)


async def test_drain_finishes_accepted_requests_and_refuses_new(
    build: Callable[..., Path], gate: Gate
) -> None:
    repo = build(max_batch_size=1)
    async with serving(repo, **gate.options) as service:
        accepted = [
            asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[i + 1]]))) for i in range(4)
        ]
        await gate.entered()
        drain = asyncio.ensure_future(service.drain())
        await asyncio.sleep(0)
        assert not service.server_ready()
        with pytest.raises(Unavailable, match="shutting down"):
            await service.infer(tiny_request("tiny.fp32", [[9]]))
        assert not drain.done()
        gate.open()
        await asyncio.wait_for(drain, 10)
        assert all(task.done() and task.exception() is None for task in accepted)


async def test_without_dynamic_batching_each_request_runs_alone(build: Callable[..., Path]) -> None:
    repo = build(dynamic_batching=False)
    rng = np.random.default_rng(4)
    async with serving(repo) as service:
        await asyncio.gather(
            *(service.infer(tiny_request("tiny.fp32", random_ids(rng, 2, 3))) for _ in range(12))
        )
        stats = service.statistics("tiny.fp32")[0]
    assert (stats.execution_count, stats.inference_count) == (12, 24)
    assert "dynamic_batching" not in service.model_config("tiny.fp32")
