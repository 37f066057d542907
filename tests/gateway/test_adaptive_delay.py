"""The adaptive batching delay (``formation.quiet``): an incomplete batch stops waiting for more requests
when none are expected in time, and never waits longer than Triton's ``max_queue_delay``. Pure rules
first, then the real batcher on real onnxruntime: a lone client does not wait out the delay, a burst still
shares one batch, and ``varigate.adaptive_delay: "false"`` restores Triton's rule exactly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from gateway.core.batching.formation import ALONE, QUIET_FLOOR_NS, Item, Rules, batches, quiet

from .conftest import serving, tiny_request

MS = 1_000_000
RULES = Rules(batching=True, max_rows=8, preferred=(), delay_ns=20 * MS, slots=1)


def test_too_few_gaps_keep_tritons_rule() -> None:
    assert quiet([MS, MS, MS], RULES.delay_ns) == 0
    assert quiet([MS] * 8, 0) == 0  # no delay: nothing to end early


def test_arrivals_that_come_alone_fire_at_once() -> None:
    assert quiet([ALONE] * 8, RULES.delay_ns) == 1
    assert quiet([ALONE] * 5 + [MS] * 3, RULES.delay_ns) == 1  # mostly alone


def test_a_burst_waits_twice_its_short_gaps_and_no_longer() -> None:
    gaps = [ALONE, 200_000, 200_000, 200_000, 300_000, 300_000, 400_000, 400_000]
    assert quiet(gaps, RULES.delay_ns) == 400_000
    assert quiet([1_000] * 8, RULES.delay_ns) == QUIET_FLOOR_NS
    assert quiet([15 * MS] * 8, RULES.delay_ns) == 0  # waiting twice the gap is the delay: Triton's rule


def test_quiet_moves_an_incomplete_batch_earlier_never_later() -> None:
    items = [Item(1, enqueued_ns=100 * MS), Item(1, enqueued_ns=101 * MS)]
    (triton,) = batches(items, RULES)
    assert triton.fire_ns == 120 * MS  # the oldest waits out max_queue_delay
    (early,) = batches(items, RULES, quiet_ns=2 * MS)
    assert early.fire_ns == 103 * MS  # the newest arrival plus the quiet time
    (capped,) = batches(items, RULES, quiet_ns=50 * MS)
    assert capped.fire_ns == 120 * MS


async def _lone_latency_s(service: object, n: int) -> float:
    worst = 0.0
    for i in range(n):
        started = time.perf_counter()
        await service.infer(tiny_request("tiny.fp32", [[1 + i % 5, 2, 3]]))  # type: ignore[attr-defined]
        worst = max(worst, time.perf_counter() - started)
        await asyncio.sleep(0.03)  # a lone client: gaps longer than the delay
    return worst


async def test_a_lone_client_stops_waiting_out_the_delay(build: Callable[..., Path]) -> None:
    delay_s = 0.2
    repo = build(max_queue_delay_us=round(delay_s * 1e6))
    async with serving(repo) as service:
        await _lone_latency_s(service, 5)  # the gaps the rule reads
        assert await _lone_latency_s(service, 5) < delay_s / 2


async def test_tritons_rule_when_the_config_asks_for_it(build: Callable[..., Path]) -> None:
    delay_s = 0.2
    repo = build(max_queue_delay_us=round(delay_s * 1e6), adaptive_delay=False)
    async with serving(repo) as service:
        await _lone_latency_s(service, 5)
        started = time.perf_counter()
        await service.infer(tiny_request("tiny.fp32", [[1, 2, 3]]))
        assert time.perf_counter() - started >= delay_s * 0.95


async def _spread_burst(service: object, n: int, gap_s: float) -> None:
    async def one(i: int) -> None:
        await asyncio.sleep(i * gap_s)
        await service.infer(tiny_request("tiny.fp32", [[1, 2]]))  # type: ignore[attr-defined]

    await asyncio.gather(*(one(i) for i in range(n)))


async def test_a_spread_burst_still_shares_one_batch_and_does_not_wait_out_the_delay(
    build: Callable[..., Path],
) -> None:
    repo = build(max_queue_delay_us=300_000, max_batch_size=16)  # 8 rows: an incomplete batch
    async with serving(repo) as service:
        for _ in range(3):  # bursts teach it short gaps
            await _spread_burst(service, 8, 0.002)
        before = service.statistics("tiny.fp32")[0]
        started = time.perf_counter()
        await _spread_burst(service, 8, 0.002)
        took = time.perf_counter() - started
        after = service.statistics("tiny.fp32")[0]
        assert after.inference_count - before.inference_count == 8
        assert after.execution_count - before.execution_count == 1  # the burst waited for itself ...
        assert took < 0.15  # ... and not for the 300 ms delay
