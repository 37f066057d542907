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
import math
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtest.clients import Driver
from loadtest.cpu import Monitor
from loadtest.loops import ClosedLoop, OpenLoop, Recorder, run_closed, run_open, slo_parameter
from loadtest.progress import Progress
from varigate.contract.keys import SLO_PARAMETER

__all__ = ["ClosedLoop", "GeneratorCpu", "OpenLoop", "Run", "execute"]

START_LEAD_S = 0.05  # the first arrival is this far in the future when the clock starts


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
    rec = Recorder(progress)
    slo = load.schedule.slo_ms.copy() if isinstance(load, OpenLoop) else np.full(0, np.nan)
    if isinstance(load, OpenLoop) and slo_ms is not None:
        slo[np.isnan(slo)] = slo_ms
    base = dict(parameters or {})
    if send_slo and slo_ms is not None:
        base[SLO_PARAMETER] = slo_parameter(slo_ms)
    t0, cpu, started_at = await _drive(
        driver, load, rec, slo, base, send_slo, slo_ms, drain_timeout_s, server_pids
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


async def _drive(
    driver: Driver,
    load: OpenLoop | ClosedLoop,
    rec: Recorder,
    slo: np.ndarray,
    base: dict[str, Any],
    send_slo: bool,
    slo_ms: float | None,
    drain_timeout_s: float,
    server_pids: tuple[int, ...],
) -> tuple[float, GeneratorCpu, float]:
    """Run the load inside ``Monitor``: the run's clock origin, the generator's CPU, the wall-clock start."""
    loop = asyncio.get_running_loop()
    usage0, wall0, started_at = resource.getrusage(resource.RUSAGE_SELF), time.monotonic(), time.time()
    if rec.progress is not None:
        rec.progress.start()
    with Monitor((os.getpid(), *server_pids)) as mon:
        t0 = loop.time() + START_LEAD_S
        if isinstance(load, OpenLoop):
            await run_open(driver, load, t0, rec, slo, base, send_slo, drain_timeout_s)
        else:
            await run_closed(driver, load, t0, rec, base, slo_ms, drain_timeout_s)
    if rec.progress is not None:
        await rec.progress.stop()
    usage1, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall0
    user_s, system_s = usage1.ru_utime - usage0.ru_utime, usage1.ru_stime - usage0.ru_stime
    return (
        t0,
        GeneratorCpu(wall, user_s, system_s, mon.window.steal_fraction, mon.window.other_cores),
        started_at,
    )


def _column(rows: list[tuple[int, float, float, float, str, str]], k: int, dtype: Any) -> np.ndarray:
    return np.asarray([r[k] for r in rows], dtype=dtype)
