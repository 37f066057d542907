"""One batch on the backend: merge its requests, run it on its grant of the compute pool, split the outputs
and answer every request; the same for batches a model version's own batcher forms and for those a
late-binding scheduler binds to it (``Batcher.dispatch``).

A backend failure fails only that batch's requests. A backend call cannot be cancelled, so a batch whose
requests have all run past their hard deadlines keeps its grant until the call returns; it is reported as a
failed batch when the last of them runs out (``Job.overrunning`` counts such batches), and its late result is
dropped. Times are ``time.monotonic_ns()``; a request's queue time ends, and the batch's compute time
starts, when the batch got its grant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gateway.core.batching.padding import length, merge, split
from gateway.core.batching.pool import REMOTE, Grant
from gateway.core.batching.queue import BatchResult, QueuedRequest, call_or_all_done
from gateway.core.config import ModelConfig
from gateway.core.errors import BackendError, DeadlineExceeded, GatewayError
from gateway.core.models.runner import Runner
from gateway.core.telemetry.observer import BatchEvent, Observer


@dataclass(slots=True)
class Job:
    """A model version's execution state, shared by every batch it runs."""

    model: str
    version: str
    config: ModelConfig
    runner: Runner
    observer: Observer
    running: dict[int, tuple[int, int]] = field(default_factory=dict)  # id(batch) -> (rows, started_ns)
    overrunning: int = 0  # running batches whose requests have all run past their deadlines
    compute_ns: int = 0  # recent batch time (moving average), for deadline-aware firing

    def done(self, rows: int, requests: int, compute_s: float, ok: bool, grant: Grant, seq: int = 0) -> None:
        event = BatchEvent(
            self.config.logical_model,
            self.model,
            self.version,
            rows,
            requests,
            compute_s,
            ok,
            grant.mode,
            seq,
            grant.predicted_ns / 1e9,
        )
        self.observer.batch_done(event)


async def execute(job: Job, batch: list[QueuedRequest], grant: Grant) -> None:
    t0 = time.monotonic_ns()
    rows = sum(it.rows for it in batch)
    job.running[id(batch)] = (rows, t0)
    seq = 0
    try:
        feeds, layout = merge(job.config, [it.feeds for it in batch])
        seq = length(job.config, feeds)
        t1 = time.monotonic_ns()
        outputs = await _run(job, batch, feeds, rows, t0, grant)
        if outputs is None:
            return  # every request ran past its deadline; reported as a failed batch
        t2 = time.monotonic_ns()
        pieces = split(job.config, outputs, layout)
        if len(pieces) != len(batch):
            raise ValueError(f"{len(pieces)} results for a batch of {len(batch)} requests")
        t3 = time.monotonic_ns()
    except Exception as e:  # noqa: BLE001 - a backend failure fails this batch only
        job.done(rows, len(batch), (time.monotonic_ns() - t0) / 1e9, False, grant, seq)
        error: GatewayError = BackendError(
            f"model {job.model!r} version {job.version} failed on a batch of {rows} rows: "
            f"{type(e).__name__}: {e}"
        )
        if isinstance(e, GatewayError):  # a runner that says what went wrong (a remote server's refusal)
            error = type(e)(f"model {job.model!r} version {job.version}: {e}")
        for it in batch:
            if not it.future.done():
                it.future.set_exception(error)
        return
    finally:
        job.running.pop(id(batch), None)
    job.done(rows, len(batch), (t2 - t1) / 1e9, True, grant, seq)
    job.compute_ns = (t3 - t0) if not job.compute_ns else (3 * job.compute_ns + t3 - t0) // 4
    for it, piece in zip(batch, pieces, strict=True):
        if not it.future.done():
            it.future.set_result(BatchResult(piece, rows, t0 - it.enqueued_ns, t1 - t0, t2 - t1, t3 - t2))


async def _run(
    job: Job, batch: list[QueuedRequest], feeds: Mapping[str, np.ndarray], rows: int, t0: int, grant: Grant
) -> dict[str, np.ndarray] | None:
    """The backend's outputs, or ``None`` when every request of the batch ran past its deadline first
    (the call is then awaited to its end, holding the grant, and its result dropped)."""
    remote = grant.mode == REMOTE
    deadline = min((it.deadline_ns for it in batch if it.deadline_ns), default=0)
    call = asyncio.ensure_future(job.runner.infer(feeds, grant.wide, remote=remote, deadline_ns=deadline))
    await call_or_all_done(call, [it.future for it in batch])
    if call.done():
        return await call
    futures = [it.future for it in batch]
    if not any(not f.cancelled() and isinstance(f.exception(), DeadlineExceeded) for f in futures):
        return await call  # cancelled by their clients, not run out: wait as before
    job.overrunning += 1
    job.done(rows, len(batch), (time.monotonic_ns() - t0) / 1e9, False, grant)
    try:
        await asyncio.gather(call, return_exceptions=True)
    finally:
        job.overrunning -= 1
    return None
