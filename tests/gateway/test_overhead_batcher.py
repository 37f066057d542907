"""The batcher's waits, made cheap: a held-back batch waits on a timer that sets the batcher's event (no
task per wait, yet it fires when due), and a running batch waits for its call or for all of its requests
to be answered elsewhere (``call_or_all_done``) without ``asyncio.wait``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.core.batching.queue import BatchResult, call_or_all_done

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
