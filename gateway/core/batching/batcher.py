"""Triton's dynamic batcher for one model version, on asyncio.

Semantics follow Triton's ``dynamic_batching`` (see ``ModelConfig``); how a batch forms and when it fires
(preferred sizes, ``max_queue_delay``, early on SLO deadlines) is ``gateway.core.batching.formation``, the
function the policy's predictions call too. Requests are taken in the order of the ``RequestQueue``
(priority levels and queue policies; ``gateway.core.batching.queue``). At most ``max_batches_in_flight``
batches run at once (the model's instance count), so requests gather while a batch runs.

``submit`` enqueues synchronously (nothing can run between routing and enqueueing) and returns a future.
Requests are validated before they get here: a batch holds only requests that can run together. One the
queue would hold too long is refused early (``gateway.core.batching.admission``). Every batch runs on a grant
of the process's compute pool (``batching.pool``), shared with every other model; how it runs is
``batching.execution``. A late-binding scheduler hands this batcher whole batches it formed elsewhere
(``dispatch``): they run at once on the scheduler's grant, outside this batcher's instances.

A request may carry a hard deadline (``expires_ns``: the client stops waiting then): it is answered with
``DeadlineExceeded`` at that moment, queued or running (``execution`` says what happens to its batch).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Mapping

import numpy as np

from gateway.core.batching.admission import Admission
from gateway.core.batching.execution import Job, execute
from gateway.core.batching.formation import ALONE, QUIET_GAPS, Rules, batches, quiet
from gateway.core.batching.padding import signature
from gateway.core.batching.pool import ComputePool, Grant
from gateway.core.batching.queue import BatchResult, QueuedRequest, RequestQueue
from gateway.core.config import ModelConfig
from gateway.core.errors import DeadlineExceeded, InvalidInput, Unavailable
from gateway.core.models.runner import Runner, placement_of
from gateway.core.telemetry.observer import NullObserver, Observer

__all__ = ["BatchResult", "Batcher"]


class Batcher:
    def __init__(
        self,
        model: str,
        version: str,
        config: ModelConfig,
        runner: Runner,
        *,
        observer: Observer | None = None,
        max_batches_in_flight: int | None = None,
        pool: ComputePool | None = None,
    ) -> None:
        self.model, self.version, self.config, self.runner = model, version, config, runner
        self._observer = observer or NullObserver()
        self._wakeup = asyncio.Event()
        self._rules = Rules.of(config)
        self._max_rows = self._rules.max_rows
        self._queue = RequestQueue(model, config.dynamic_batching, self._wakeup.set)
        self._instances = max(1, max_batches_in_flight or config.instance_count)
        self._slots = asyncio.Semaphore(self._instances)
        self._pool = pool or ComputePool(self._instances)  # alone: its own instances are its pool
        self._job = Job(model, version, config, runner, self._observer)
        preferred = self._rules.preferred
        self._admission = Admission(model, preferred[-1] if preferred else self._max_rows, self._instances)
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True
        self._inflight = 0
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._adaptive = config.adaptive_delay and self._rules.delay_ns > 0
        self._gaps: deque[int] = deque(maxlen=QUIET_GAPS)  # between recent arrivals (formation.quiet)
        self._last_arrival_ns = 0

    # -- public -----------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def overrunning(self) -> int:
        """Batches still running after every one of their requests ran past its deadline (a stuck backend)."""
        return self._job.overrunning

    def backlog(self) -> tuple[QueuedRequest, ...]:
        """The queued requests in batch order (``QueueView``)."""
        return tuple(self._queue)

    def running(self) -> tuple[tuple[int, int], ...]:
        """``(rows, started_ns)`` of the batches executing now (``QueueView``)."""
        return tuple(self._job.running.values())

    def recent_compute_ns(self) -> int:
        """The recent batch compute time, a moving average (``QueueView``; 0 until a batch has run)."""
        return self._job.compute_ns

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"batcher:{self.model}:{self.version}"
            )

    def submit(
        self,
        feeds: Mapping[str, np.ndarray],
        *,
        priority: int = 0,
        timeout_us: int = 0,
        deadline_ns: int = 0,
        expires_ns: int = 0,
    ) -> asyncio.Future[BatchResult]:
        """Enqueue a validated request and return the future of its result. ``priority`` and ``timeout_us``
        are the request's ``priority`` and ``timeout`` parameters (0 = not given); the timeout overrides the
        level's default only where its queue policy has ``allow_timeout_override``. ``deadline_ns``
        (``time.monotonic_ns()``, 0 = none) is when its SLO runs out: its batch fires early for it.
        ``expires_ns`` (0 = none) is its hard deadline: it is answered with ``DeadlineExceeded`` then."""
        if not self._accepting:
            raise Unavailable(f"model {self.model!r} version {self.version} is shutting down")
        rows = next(iter(feeds.values())).shape[0] if self.config.max_batch_size > 0 and feeds else 1
        if rows > self._max_rows:
            raise InvalidInput(
                f"inference request batch-size must be <= {self._max_rows} for {self.model!r}, got {rows}"
            )
        self._admission.refuse_if_late(
            self._queue, rows, priority, timeout_us, expires_ns, self._job.compute_ns
        )
        item = self._queue.push(feeds, rows, signature(self.config, feeds), priority, timeout_us, deadline_ns)
        if self._adaptive:
            alone = self._inflight == 0 or not self._last_arrival_ns
            self._gaps.append(ALONE if alone else item.enqueued_ns - self._last_arrival_ns)
            self._last_arrival_ns = item.enqueued_ns
        self._inflight += 1
        self._idle.clear()
        item.future.add_done_callback(lambda _f: self._finished(item))
        if expires_ns:
            left_s = max(0.0, (expires_ns - time.monotonic_ns()) / 1e9)
            timer = asyncio.get_running_loop().call_later(left_s, self._expire, item, expires_ns)
            item.future.add_done_callback(lambda _f: timer.cancel())
        self._report()
        self._wakeup.set()
        self.start()
        return item.future

    async def drain(self) -> None:
        """Stop accepting; return when every accepted request has finished."""
        self._accepting = False
        self._wakeup.set()
        await self._idle.wait()

    async def close(self, timeout_s: float | None = None) -> None:
        """Drain, then stop. Whatever has not finished after ``timeout_s`` fails with ``Unavailable``."""
        try:
            await asyncio.wait_for(self.drain(), timeout_s)
        except TimeoutError:
            self._fail(self._queue, "was closed while the request was queued")
            for task in self._batches:
                task.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._batches, return_exceptions=True)

    def _fail(self, items: Iterable[QueuedRequest], why: str) -> None:
        error = Unavailable(f"model {self.model!r} version {self.version} {why}")
        for item in list(items):
            if not item.future.done():
                item.future.set_exception(error)

    def _expire(self, item: QueuedRequest, expires_ns: int) -> None:
        if item.future.done():
            return
        given_ms = (expires_ns - item.enqueued_ns) / 1e6
        where = "waiting in the queue" if item.queued else "while its batch was running on the backend"
        item.future.set_exception(
            DeadlineExceeded(
                f"request to model {self.model!r} version {self.version} ran past its deadline "
                f"({given_ms:.0f} ms after it arrived) {where}"
            )
        )

    # -- queue bookkeeping ------------------------------------------------------------------------------

    def _finished(self, item: QueuedRequest) -> None:
        """Done callback of every accepted request: result, error, timeout or cancellation."""
        self._queue.remove(item)
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()
        self._report()
        self._wakeup.set()

    def _report(self) -> None:
        self._observer.queue_changed(
            self.config.logical_model, self.model, self.version, self.queued, self._inflight
        )

    # -- batching -------------------------------------------------------------------------------------

    def _plan(self, now_ns: int) -> tuple[list[QueuedRequest], int]:
        """The batch to run now, or ``([], wake_at_ns)`` (``formation.batches`` decides; draining, an
        incomplete batch does not wait)."""
        quiet_ns = quiet(self._gaps, self._rules.delay_ns) if self._adaptive else 0
        batch = next(batches(self._queue, self._rules, self._job.compute_ns, quiet_ns))
        if batch.fire_ns > now_ns and self._accepting:
            return [], batch.fire_ns
        return list(batch.items), 0

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            for it in batch:
                self._queue.remove(it)
            self._report()
            batch = [it for it in batch if not it.future.done()]  # cancelled while queued
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._execute(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _next_batch(self) -> list[QueuedRequest]:
        """Woken by every change, and when a held-back batch is due by a timer that sets the same event
        (no task per wait); a stale timer only wakes it once more."""
        loop, timer = asyncio.get_running_loop(), None
        try:
            while True:
                self._wakeup.clear()
                if self.queued:
                    batch, wake_at_ns = self._plan(time.monotonic_ns())
                    if batch:
                        return batch
                    if timer is not None:
                        timer.cancel()
                    delay_s = max(0.0, (wake_at_ns - time.monotonic_ns()) / 1e9)
                    timer = loop.call_later(delay_s, self._wakeup.set)
                await self._wakeup.wait()
        finally:
            if timer is not None:
                timer.cancel()

    def dispatch(self, items: list[QueuedRequest], grant: Grant) -> None:
        """Run ``items``, a batch a late-binding scheduler formed and bound to this variant, on ``grant``
        now (its requests were queued, and are removed, elsewhere; this batcher answers them)."""
        self._inflight += len(items)
        self._idle.clear()
        for it in items:
            it.future.add_done_callback(self._dispatched_done)
        task = asyncio.get_running_loop().create_task(self._execute(items, grant))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)
        self._report()

    def _dispatched_done(self, _future: object) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()
        self._report()

    async def _execute(self, batch: list[QueuedRequest], grant: Grant | None = None) -> None:
        own = grant is None  # a batch of this batcher's own queue holds one of its instances
        try:
            if grant is None and placement_of(self._job.runner) == "remote":
                grant = self._pool.take_remote(self._job.compute_ns)
            elif grant is None:
                grant = await self._pool.take(alone=not self.queued, predicted_ns=self._job.compute_ns)
            await execute(self._job, batch, grant)
        except asyncio.CancelledError:
            self._fail(batch, "was closed while the request was running")
            raise
        finally:
            if grant is not None:
                self._pool.give_back(grant)
            if own:
                self._slots.release()
            self._wakeup.set()
