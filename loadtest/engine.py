"""Open- and closed-loop load, recorded per request.

Open loop: every arrival time comes from a ``Schedule`` fixed in advance; a request is sent at its time
whether or not earlier ones have answered, and its latency runs from the *scheduled* time. A slow server
(or a slow generator) therefore shows up in the latency instead of silently lowering the offered load
("coordinated omission"). ``sent_s - scheduled_s`` is the generator's own lag, recorded per request.
At most ``max_inflight`` requests are outstanding; an arrival beyond that is recorded as the error
``client_overflow`` (never silently skipped).

Closed loop: ``concurrency`` workers each send, wait for the answer, and send again (Triton's
perf_analyzer's default), for ``duration_s`` or ``max_requests``.

Both are bounded: a run ends at the last arrival (or ``duration_s``) plus ``drain_timeout_s``; requests
still open then are cancelled and recorded as ``timeout``. The generator's CPU use (``getrusage``) and
the machine's steal and other processes' CPU (``loadtest.cpu.Monitor``) are recorded with every run.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtest.arrivals import Schedule
from loadtest.clients import Driver
from loadtest.cpu import Monitor
from loadtest.progress import Progress
from varigate.contract.keys import SLO_PARAMETER

START_LEAD_S = 0.05  # the first arrival is this far in the future when the clock starts


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


@dataclass(frozen=True, slots=True)
class GeneratorCpu:
    """The generator process's CPU over the run, and what else the machine did meanwhile."""

    wall_s: float
    user_s: float
    system_s: float
    steal_fraction: float
    other_cores: float  # processes other than the generator and the given server pids, in cores

    @property
    def cores(self) -> float:
        return (self.user_s + self.system_s) / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Run:
    """One run, one row per request; times in seconds from the run's start, ``nan`` where not reached."""

    mode: str
    description: str
    scheduled_s: np.ndarray
    sent_s: np.ndarray
    done_s: np.ndarray
    error: np.ndarray  # object array of str; "" = success
    variant: np.ndarray  # object array of str
    slo_ms: np.ndarray  # nan = no SLO
    rows: np.ndarray
    cpu: GeneratorCpu
    warmup_s: float = 0.0
    started_at: float = 0.0  # time.time() at the start, for reports only
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_ms(self) -> np.ndarray:
        latency: np.ndarray = (self.done_s - self.scheduled_s) * 1000.0
        return latency

    @property
    def ok(self) -> np.ndarray:
        mask: np.ndarray = self.error == ""
        return mask

    def measured(self) -> np.ndarray:
        """Mask of the requests that count: scheduled after the warm-up."""
        mask: np.ndarray = self.scheduled_s >= self.warmup_s
        return mask


class _Recorder:
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


async def execute(
    driver: Driver,
    load: OpenLoop | ClosedLoop,
    *,
    parameters: dict[str, Any] | None = None,
    slo_ms: float | None = None,
    send_slo: bool = True,
    warmup_s: float = 0.0,
    drain_timeout_s: float = 30.0,
    progress: Progress | None = None,
    server_pids: tuple[int, ...] = (),
    description: str = "",
) -> Run:
    """Drive ``driver`` with ``load``. ``parameters`` go with every request; ``slo_ms`` (or the schedule's
    per-request SLO, which wins) is the SLO results are judged by, and is sent as ``slo_ms`` unless
    ``send_slo`` is false."""
    loop = asyncio.get_running_loop()
    rec = _Recorder(progress)
    slo = load.schedule.slo_ms.copy() if isinstance(load, OpenLoop) else np.full(0, np.nan)
    if isinstance(load, OpenLoop) and slo_ms is not None:
        slo[np.isnan(slo)] = slo_ms
    base = dict(parameters or {})
    if send_slo and slo_ms is not None:
        base[SLO_PARAMETER] = _slo_parameter(slo_ms)
    usage0, wall0, started_at = resource.getrusage(resource.RUSAGE_SELF), time.monotonic(), time.time()
    if progress is not None:
        progress.start()
    with Monitor((os.getpid(), *server_pids)) as mon:
        t0 = loop.time() + START_LEAD_S
        if isinstance(load, OpenLoop):
            await _open(driver, load, t0, rec, slo, base, send_slo, drain_timeout_s)
        else:
            await _closed(driver, load, t0, rec, base, slo_ms, drain_timeout_s)
    if progress is not None:
        await progress.stop()
    usage1, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall0
    cpu = GeneratorCpu(
        wall,
        usage1.ru_utime - usage0.ru_utime,
        usage1.ru_stime - usage0.ru_stime,
        mon.window.steal_fraction,
        mon.window.other_cores,
    )
    if isinstance(load, OpenLoop):  # an arrival whose task never ran (cancelled at once) is still an arrival
        missing = set(range(len(load.schedule))) - {r[0] for r in rec.rows}
        rec.rows += [
            (i, t0 + float(load.schedule.times_s[i]), math.nan, math.nan, "not_sent", "") for i in missing
        ]
    rec.rows.sort()
    idx = np.asarray([r[0] for r in rec.rows], dtype=np.int64)
    if isinstance(load, ClosedLoop):
        slo = np.full(len(idx), np.nan if slo_ms is None else float(slo_ms))
    return Run(
        mode="open" if isinstance(load, OpenLoop) else "closed",
        description=description
        or (
            load.schedule.description
            if isinstance(load, OpenLoop)
            else f"closed loop, concurrency {load.concurrency}"
        ),
        scheduled_s=_column(rec.rows, 1, float) - t0,
        sent_s=_column(rec.rows, 2, float) - t0,
        done_s=_column(rec.rows, 3, float) - t0,
        error=_column(rec.rows, 4, object),
        variant=_column(rec.rows, 5, object),
        slo_ms=slo,
        rows=np.asarray([driver.payloads.rows(int(i)) for i in idx], dtype=np.int64),
        cpu=cpu,
        warmup_s=warmup_s,
        started_at=started_at,
        info={"concurrency": load.concurrency} if isinstance(load, ClosedLoop) else {},
    )


def _slo_parameter(slo_ms: float) -> int:
    """The wire form: whole milliseconds, at least 1 (0 is not a valid SLO)."""
    return max(1, round(slo_ms))


def _column(rows: list[tuple[int, float, float, float, str, str]], k: int, dtype: Any) -> np.ndarray:
    return np.asarray([r[k] for r in rows], dtype=dtype)


async def _open(
    driver: Driver,
    load: OpenLoop,
    t0: float,
    rec: _Recorder,
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
            params = {**base, SLO_PARAMETER: _slo_parameter(float(slo[i]))}
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
    await _drain(list(inflight.values()), drain_timeout_s)


async def _closed(
    driver: Driver,
    load: ClosedLoop,
    t0: float,
    rec: _Recorder,
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
    await _drain(tasks, load.duration_s + drain_timeout_s)


async def _drain(tasks: list[asyncio.Task[None]], timeout_s: float) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
