"""The two ways load is offered (``engine.execute`` drives them and records the run): an open loop sends every
request at its scheduled time, a closed loop keeps ``concurrency`` requests outstanding. Each request is
recorded as it ends; requests still open at the deadline are cancelled and recorded as ``timeout``."""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from loadtest.arrivals import Schedule
from loadtest.clients import Driver
from loadtest.progress import Progress
from varigate.contract.keys import SLO_PARAMETER


@dataclass(frozen=True, slots=True)
class OpenLoop:
    schedule: Schedule
    max_inflight: int = 1024


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    concurrency: int
    duration_s: float
    max_requests: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.duration_s <= 0:
            raise ValueError(f"closed loop needs concurrency >= 1 and duration > 0, got {self}")


class Recorder:
    def __init__(self, progress: Progress | None) -> None:
        self.rows: list[tuple[int, float, float, float, str, str]] = []
        self.progress = progress

    def add(
        self,
        i: int,
        sched: float,
        sent: float,
        done: float,
        error: str = "",
        variant: str = "",
        slo_ms: float = math.nan,
    ) -> None:
        self.rows.append((i, sched, sent, done, error, variant))
        if self.progress is not None:
            lat = (done - sched) * 1000.0
            self.progress.request_done(lat, bool(error), not error and lat > slo_ms)


def slo_parameter(slo_ms: float) -> int:
    """The wire form: whole milliseconds, at least 1 (0 is not a valid SLO)."""
    return max(1, round(slo_ms))


async def run_open(
    driver: Driver,
    load: OpenLoop,
    t0: float,
    rec: Recorder,
    slo: np.ndarray,
    base: dict[str, Any],
    send_slo: bool,
    drain_timeout_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    progress = rec.progress
    per_request = send_slo and bool(np.any(~np.isnan(load.schedule.slo_ms)))
    inflight: dict[int, asyncio.Task[None]] = {}

    async def one(i: int, target: float) -> None:
        params = base
        if per_request and not math.isnan(slo[i]):
            params = {**base, SLO_PARAMETER: slo_parameter(float(slo[i]))}
        sent = loop.time()
        try:
            reply = await driver.infer(i, params)
        except asyncio.CancelledError:
            rec.add(i, target, sent, math.nan, "timeout", "", slo[i])
            raise
        except Exception as e:  # noqa: BLE001 - a client library failure is a result, not a crash
            rec.add(i, target, sent, loop.time(), f"client_{type(e).__name__}", "", slo[i])
            return
        finally:
            inflight.pop(i, None)
        rec.add(i, target, sent, loop.time(), reply.error, reply.variant, slo[i])

    for i, offset in enumerate(load.schedule.times_s.tolist()):
        target = t0 + offset
        delay = target - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(inflight) >= load.max_inflight:
            rec.add(i, target, math.nan, math.nan, "client_overflow", "", slo[i])
            continue
        if progress is not None:
            progress.request_sent()
        inflight[i] = loop.create_task(one(i, target))
    await drain(list(inflight.values()), drain_timeout_s)


async def run_closed(
    driver: Driver,
    load: ClosedLoop,
    t0: float,
    rec: Recorder,
    params: dict[str, Any],
    slo_ms: float | None,
    drain_timeout_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    counter = itertools.count()
    end = t0 + load.duration_s
    limit = load.max_requests if load.max_requests is not None else math.inf
    slo = math.nan if slo_ms is None else float(slo_ms)
    await asyncio.sleep(max(0.0, t0 - loop.time()))

    async def worker() -> None:
        while (now := loop.time()) < end:
            i = next(counter)
            if i >= limit:
                return
            if rec.progress is not None:
                rec.progress.request_sent()
            try:
                reply = await driver.infer(i, params)
            except asyncio.CancelledError:
                rec.add(i, now, now, math.nan, "timeout", "", slo)
                raise
            except Exception as e:  # noqa: BLE001
                rec.add(i, now, now, loop.time(), f"client_{type(e).__name__}", "", slo)
                continue
            rec.add(i, now, now, loop.time(), reply.error, reply.variant, slo)

    tasks = [loop.create_task(worker()) for _ in range(load.concurrency)]
    await drain(tasks, load.duration_s + drain_timeout_s)


async def drain(tasks: list[asyncio.Task[None]], timeout_s: float) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
