"""The batcher's waits, made cheap: a held-back batch waits on a timer that sets the batcher's event (no
task per wait, yet it fires when due), and a running batch waits for its call or for all of its requests
to be answered elsewhere (``call_or_all_done``) without ``asyncio.wait``; the queue keeps its length and
rows per level as counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.core.batching.queue import BatchResult, RequestQueue, call_or_all_done
from gateway.core.config import DynamicBatching, QueuePolicy, TimeoutAction

from .conftest import serving, tiny_request

DELAY_S = 0.3


async def test_a_held_back_batch_waits_without_a_task_and_fires_when_due(build: Callable[..., Path]) -> None:
    delay_us = round(DELAY_S * 1e6)
    repo = build(variants=("fp32",), classifier=False, max_queue_delay_us=delay_us, adaptive_delay=False)
    async with serving(repo) as service:
        await service.infer(tiny_request("tiny.fp32", [[1, 2]]))  # the batcher's loop is running now
        before = asyncio.all_tasks()
        t0 = time.monotonic()
        request = asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[3, 4]])))
        await asyncio.sleep(DELAY_S / 3)
        extra = asyncio.all_tasks() - before - {request}
        assert not request.done()
        response = await request
        waited = time.monotonic() - t0
    assert extra == set(), [t.get_coro() for t in extra]
    assert response.model_name == "tiny.fp32"
    assert DELAY_S * 0.9 <= waited < DELAY_S + 1.0


async def test_call_or_all_done_returns_when_the_call_is_done() -> None:
    loop = asyncio.get_running_loop()
    call: asyncio.Future[int] = loop.create_future()
    futures: list[asyncio.Future[BatchResult]] = [loop.create_future() for _ in range(3)]
    waiting = asyncio.ensure_future(call_or_all_done(call, futures))
    futures[0].cancel()
    await asyncio.sleep(0.01)
    assert not waiting.done()  # one of three answered elsewhere: still waiting for the call
    loop.call_later(0.01, call.set_result, 7)
    await asyncio.wait_for(waiting, 5)
    assert not any(f.done() for f in futures[1:])


async def test_call_or_all_done_returns_when_every_request_is_answered_elsewhere() -> None:
    loop = asyncio.get_running_loop()
    call: asyncio.Future[int] = loop.create_future()
    futures: list[asyncio.Future[BatchResult]] = [loop.create_future() for _ in range(3)]
    futures[0].cancel()  # done before the wait starts
    waiting = asyncio.ensure_future(call_or_all_done(call, futures))
    futures[1].set_exception(TimeoutError("ran out"))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    futures[2].cancel()
    await asyncio.wait_for(waiting, 5)
    assert not call.done()
    futures[1].exception()  # retrieved, so no "never retrieved" warning
    await call_or_all_done(call, futures)  # every request already answered: returns at once
    call.cancel()


@pytest.mark.parametrize("cancel_waiter", [False, True])
async def test_call_or_all_done_can_be_cancelled(cancel_waiter: bool) -> None:
    loop = asyncio.get_running_loop()
    call: asyncio.Future[int] = loop.create_future()
    futures: list[asyncio.Future[BatchResult]] = [loop.create_future()]
    waiting = asyncio.ensure_future(call_or_all_done(call, futures))
    await asyncio.sleep(0)
    if cancel_waiter:
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not call.done() and not futures[0].done()  # cancelling the wait cancels neither
    else:
        call.set_result(1)
        await asyncio.wait_for(waiting, 5)
    futures[0].cancel()
    call.cancel()


async def test_the_queue_counts_what_it_holds_as_requests_come_and_go() -> None:
    """``len`` and ``rows_ahead`` are kept as counts; they must equal what iterating the queue finds, through
    pushes at every level, removals, a DELAY timeout (moved behind, still counted) and a REJECT timeout."""
    policy = QueuePolicy(TimeoutAction.DELAY, default_timeout_us=1000)
    batching = DynamicBatching(priority_levels=3, default_priority_level=2, priority_queue_policy={1: policy})
    queue = RequestQueue("m", batching, lambda: None)
    items = [
        queue.push({}, rows, (), priority, 0) for rows, priority in ((1, 1), (2, 2), (3, 3), (4, 0), (5, 1))
    ]
    await asyncio.sleep(0.02)  # the level-1 requests time out and are moved behind (DELAY)

    def check() -> None:
        held = list(queue)
        assert len(queue) == len(held)
        for priority in (1, 2, 3):
            level = queue.level_of(priority)
            assert queue.rows_ahead(priority) == sum(it.rows for it in held if it.level <= level)

    assert [it.rows for it in queue] == [1, 5, 2, 4, 3] and all(it.delayed for it in items[::4])
    check()
    queue.remove(items[1])
    queue.remove(items[1])  # twice: counted once
    queue.remove(items[0])
    check()
    assert (len(queue), queue.rows_ahead(3)) == (3, 12)
    for item in items:
        queue.remove(item)
        item.future.cancel()
    check()
    assert (len(queue), queue.rows_ahead(3), list(queue)) == (0, 0, [])
