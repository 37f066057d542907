"""Triton's scheduler queue for one model version: priority levels, each with its queue policy.

Levels run from 1 (highest) to ``priority_levels``; a model without levels has the single level 0. A
request's priority 0, or one beyond the model's levels, means the default level (Triton's rule). Each level
has a policy: ``max_queue_size`` (a full level refuses at once with ``Overloaded``) and a queue timeout
(the level's default, or the request's own where ``allow_timeout_override``). A request that times out is
rejected with ``DeadlineExceeded`` (REJECT) or moved behind the rest of its level (DELAY). Iteration yields
requests in the order batches take them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.core.batching.padding import Signature
from gateway.core.config import DynamicBatching, QueuePolicy, TimeoutAction
from gateway.core.errors import DeadlineExceeded, Overloaded


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a queued request's future resolves to: its outputs and where its time went."""

    outputs: dict[str, np.ndarray]
    batch_rows: int  # rows in the batch this request ran in
    queue_ns: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int


@dataclass(eq=False, slots=True)
class QueuedRequest:
    feeds: Mapping[str, np.ndarray]
    rows: int
    level: int
    signature: Signature
    enqueued_ns: int
    future: asyncio.Future[BatchResult]
    deadline_ns: int = 0  # when the request's SLO runs out (time.monotonic_ns()); 0 = no SLO
    queued: bool = True
    delayed: bool = False
    timer: asyncio.TimerHandle | None = None
    # late binding (``selection.late``): what the choice reads, and the variant that served the request
    max_loss: float = math.inf  # the request's ``max_accuracy_loss``
    length: int = 0  # its sequence length (``padding.length``)
    served: Any = None


@dataclass(slots=True)
class _Level:
    policy: QueuePolicy
    normal: deque[QueuedRequest] = field(default_factory=deque)
    delayed: deque[QueuedRequest] = field(default_factory=deque)
    rows: int = 0  # of the requests in normal and delayed

    def __len__(self) -> int:
        return len(self.normal) + len(self.delayed)


class RequestQueue:
    def __init__(self, model: str, batching: DynamicBatching | None, on_change: Callable[[], None]) -> None:
        self._model = model
        self._on_change = on_change
        self._levels_n = batching.priority_levels if batching else 0
        self._default_level = (batching.default_priority_level or self._levels_n) if batching else 0
        numbers = range(1, self._levels_n + 1) if self._levels_n else (0,)
        self._levels = {n: _Level(batching.queue_policy(n) if batching else QueuePolicy()) for n in numbers}
        self._count = 0  # requests queued, all levels: counted as they come and go, read on every request

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[QueuedRequest]:
        for level in self._levels.values():  # levels ascending, as made
            yield from level.normal
            yield from level.delayed

    def policy_of(self, priority: int) -> QueuePolicy:
        return self._levels[self.level_of(priority)].policy

    def rows_ahead(self, priority: int) -> int:
        """Rows queued at ``priority``'s level and above: what a new request there waits behind."""
        number = self.level_of(priority)
        return sum(level.rows for n, level in self._levels.items() if n <= number)

    def level_of(self, priority: int) -> int:
        if not self._levels_n:
            return 0
        return priority if 0 < priority <= self._levels_n else self._default_level

    def push(
        self,
        feeds: Mapping[str, np.ndarray],
        rows: int,
        signature: Signature,
        priority: int,
        timeout_us: int,
        deadline_ns: int = 0,
    ) -> QueuedRequest:
        """Enqueue, or raise ``Overloaded`` when the request's level is full."""
        number = self.level_of(priority)
        level = self._levels[number]
        policy = level.policy
        if policy.max_queue_size and len(level) >= policy.max_queue_size:
            raise Overloaded(
                f"model {self._model!r} queue is full: {len(level)} requests queued at priority level "
                f"{number}, max_queue_size {policy.max_queue_size}"
            )
        loop = asyncio.get_running_loop()
        now_ns = time.monotonic_ns()
        item = QueuedRequest(feeds, rows, number, signature, now_ns, loop.create_future(), deadline_ns)
        timeout = timeout_us if timeout_us and policy.allow_timeout_override else policy.default_timeout_us
        if timeout > 0:
            item.timer = loop.call_later(timeout / 1e6, self._expire, item, timeout)
        level.normal.append(item)
        level.rows += rows
        self._count += 1
        return item

    def remove(self, item: QueuedRequest) -> None:
        """Take ``item`` out (it is in a batch, finished or cancelled); its queue timeout no longer runs."""
        if item.timer is not None:
            item.timer.cancel()
            item.timer = None
        if item.queued:
            item.queued = False
            level = self._levels[item.level]
            (level.delayed if item.delayed else level.normal).remove(item)
            level.rows -= item.rows
            self._count -= 1

    def _expire(self, item: QueuedRequest, timeout_us: int) -> None:
        item.timer = None
        if item.future.done() or not item.queued:
            return
        level = self._levels[item.level]
        if level.policy.timeout_action is TimeoutAction.DELAY:
            if not item.delayed:
                level.normal.remove(item)
                level.delayed.append(item)
                item.delayed = True
                self._on_change()
            return
        item.future.set_exception(
            DeadlineExceeded(f"request to model {self._model!r} timed out after {timeout_us} us in the queue")
        )


async def call_or_all_done(call: asyncio.Future[Any], futures: Sequence[asyncio.Future[BatchResult]]) -> None:
    """Return once ``call`` is done or every one of ``futures`` is (its requests all answered elsewhere:
    run out or cancelled). What ``asyncio.wait(FIRST_COMPLETED)`` in a loop does, without its set, its
    coroutine checks and a wait per request that finishes early."""
    left = sum(not f.done() for f in futures)
    if call.done() or not left:
        return
    waiter: asyncio.Future[None] = call.get_loop().create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    def one_done(_: object) -> None:
        nonlocal left
        left -= 1
        if not left:
            wake()

    call.add_done_callback(wake)
    waiting = [f for f in futures if not f.done()]
    for f in waiting:
        f.add_done_callback(one_done)
    try:
        await waiter
    finally:
        call.remove_done_callback(wake)
        for f in waiting:
            f.remove_done_callback(one_done)
