"""Shadow sampling on a real service over the tiny repository (onnxruntime; ``SlowBackend`` where compute
must take a known time): a fixed fraction of answered requests is shadowed, under load too, within the
cost cap, behind the clients' own requests; each shadowed request is one sample."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.core.api import ModelStatistics
from gateway.core.drift.monitor import DriftConfig, DriftMonitor
from gateway.core.drift.shadow import ShadowBudget
from gateway.core.selection.events import NullPolicyObserver
from gateway.core.service import Service
from tests.fixtures.tinyrepo import build_tiny_repository
from tests.gateway.conftest import random_ids, serving, tiny_request
from tests.gateway.policy.support import DELAYS, SLOW

SLOW_OPTIONS: dict[str, Any] = {"backend": SLOW, "backend_options": {}}
FP32_SHADOW_NS = 60e6  # SlowBackend: fp32 takes at least 40 ms a batch + 20 ms a row (DELAYS)


class Shadows(NullPolicyObserver):
    """What the shadower reported, per (variant, outcome)."""

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def shadow(self, model: str, variant: str, outcome: str, agreement: float | None) -> None:
        self.outcomes[(variant, outcome)] += 1

    def count(self, variant: str, *outcomes: str) -> int:
        return sum(self.outcomes[(variant, o)] for o in outcomes or ("compared", "busy", "failed"))


def monitor(shadows: Shadows, **config: Any) -> DriftMonitor:
    return DriftMonitor(DriftConfig(seed=11, **config), shadows)


def stats(service: Service, name: str) -> ModelStatistics:
    return service.statistics(name)[0]


def compute_ns(s: ModelStatistics) -> int:
    return s.compute_input.ns + s.compute_infer.ns + s.compute_output.ns


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def settled(service: Service, shadows: Shadows) -> None:
    """Drain the service (every enqueued shadow runs), then wait until each one's comparison is reported:
    all of fp32's executions are shadows of int8's requests."""
    await service.drain(timeout_s=20)
    await until(
        lambda: (
            shadows.count("tiny.int8", "compared", "failed") == stats(service, "tiny.fp32").inference_count
        )
    )


def test_the_budget_caps_the_share_and_the_concurrency() -> None:
    """A shadow costing 60 against served requests of 10 each: with a 0.2 share it is admitted again only
    once 60 <= 0.2 * (60 + served), i.e. after 24 served requests; at most 2 run at once; shares decay
    over ``window`` served requests."""
    budget = ShadowBudget(max_share=0.2, max_concurrent=2, window=10**12)
    assert budget.admits()  # nothing measured yet
    budget.started()
    budget.started()
    assert not budget.admits()  # two running
    budget.finished(0.0)  # a failed one
    budget.finished(60.0)
    for _ in range(23):
        budget.served(10.0)
    assert not budget.admits() and budget.share == pytest.approx(60 / 290)
    budget.served(10.0)
    assert budget.admits() and budget.share == pytest.approx(0.2)
    decaying = ShadowBudget(max_share=0.2, max_concurrent=1, window=10, shadow_ns=60.0)
    for _ in range(20):
        decaying.served(0.0)
    assert decaying.shadow_ns == pytest.approx(60 * 0.9**20)


async def test_a_fixed_fraction_of_answered_requests_is_shadowed(tiny_repo: Path) -> None:
    """300 requests pinned to int8, shadow_fraction 0.2, no cap in the way: each answered request is
    sampled once (binomial: 60 +- 4 sd = 28), every sampled one runs on fp32 and is one sample."""
    shadows = Shadows()
    drift = monitor(shadows, shadow_fraction=0.2, shadow_max_share=1.0, shadow_max_concurrent=300)
    rng = np.random.default_rng(0)
    async with serving(tiny_repo, drift=drift) as service:
        for _ in range(300):
            await service.infer(tiny_request("tiny.int8", random_ids(rng, 1, 5)))
        await settled(service, shadows)
        sampled = shadows.count("tiny.int8")
        assert abs(sampled - 60) <= 4 * math.sqrt(300 * 0.2 * 0.8)
        assert (
            shadows.count("tiny.int8", "compared") == sampled == stats(service, "tiny.fp32").inference_count
        )
        assert stats(service, "tiny.fp32").success.count == 0  # shadows are not client requests
        assert drift.samples("tiny", "tiny.int8", "1") == sampled
        assert not drift.demoted("tiny.int8", "1")


async def test_shadows_run_under_load(tmp_path: Path) -> None:
    """16 requests at once (int8 queues, batches of up to 8): with room under the cap, every one is
    shadowed, not only when the machine is idle."""
    repo = build_tiny_repository(tmp_path / "repo", delays_ms=DELAYS)
    shadows = Shadows()
    drift = monitor(shadows, shadow_fraction=1.0, shadow_max_share=1.0, shadow_max_concurrent=16)
    rng = np.random.default_rng(1)
    async with serving(repo, drift=drift, **SLOW_OPTIONS) as service:
        requests = [tiny_request("tiny.int8", random_ids(rng, 1, 4)) for _ in range(16)]
        await asyncio.gather(*(service.infer(r) for r in requests))
        await settled(service, shadows)
        assert shadows.count("tiny.int8", "compared") == 16
        assert stats(service, "tiny.int8").execution_count < 16  # they were batched: int8 was busy


async def test_shadow_compute_stays_within_its_share(tmp_path: Path) -> None:
    """Every request sampled (fraction 1), a shadow on fp32 costs 6 int8 requests (at least 60 ms against
    ~10): with shadow_max_share 0.2 and one shadow at a time, shadows may use at most a quarter of what
    the served requests used (decayed over the last 1000: at least 0.94 of it here), plus the one admitted
    last. Most sampled requests are skipped as busy; without the share, one in 6 would run (11)."""
    repo = build_tiny_repository(tmp_path / "repo", delays_ms=DELAYS)
    shadows = Shadows()
    drift = monitor(shadows, shadow_fraction=1.0, shadow_max_share=0.2, shadow_max_concurrent=1)
    rng = np.random.default_rng(2)
    async with serving(repo, drift=drift, **SLOW_OPTIONS) as service:
        for _ in range(60):
            await service.infer(tiny_request("tiny.int8", random_ids(rng, 1, 4)))
        await settled(service, shadows)
        compared, busy = shadows.count("tiny.int8", "compared"), shadows.count("tiny.int8", "busy")
        assert compared + busy == 60 and compared >= 1
        served_ns = compute_ns(stats(service, "tiny.int8"))  # batches of one: each request's own compute
        assert compared * FP32_SHADOW_NS <= 0.25 * served_ns / 0.94 + FP32_SHADOW_NS


async def test_shadows_wait_behind_client_requests(tmp_path: Path) -> None:
    """fp32 with two priority levels (clients default to level 1), one request per batch, 300 ms each: the
    shadow of an int8 request, queued on fp32 while a client's fp32 request runs, waits at level 2, so a
    client request to fp32 sent after it runs first (fp32 has executed 2 requests, not 3, when it is
    answered); the shadow runs next."""
    repo = build_tiny_repository(
        tmp_path / "repo",
        delays_ms=(("fp32", 300.0, 0.0), ("int8", 50.0, 0.0)),
        priority_levels=2,
        default_priority_level=1,
        max_batch_size=1,
    )
    shadows = Shadows()
    drift = monitor(shadows, shadow_fraction=1.0, shadow_max_share=1.0)
    rng = np.random.default_rng(3)
    async with serving(repo, drift=drift, **SLOW_OPTIONS) as service:
        first = asyncio.create_task(service.infer(tiny_request("tiny.fp32", random_ids(rng, 1, 4))))
        await service.infer(tiny_request("tiny.int8", random_ids(rng, 1, 4)))  # shadow queued on fp32
        await service.infer(tiny_request("tiny.fp32", random_ids(rng, 1, 4)))
        assert first.done() and stats(service, "tiny.fp32").inference_count == 2
        await until(lambda: stats(service, "tiny.fp32").inference_count == 3)
        await until(lambda: shadows.count("tiny.int8", "compared") >= 1)
