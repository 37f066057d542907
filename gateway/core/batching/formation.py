"""Queue-aware feasibility: when would a new request finish on a variant, given what its batcher holds?

The queued requests (and the new one, last) are grouped into the batches the batcher would form (requests
taken in order until the largest preferred size, never beyond ``max_batch_size``), and the batches are run,
in order, on the variant's instances, each instance free once its running batch ends. The batches ahead
take their typical time (``typical(rows)``, the median), the new request's batch its tail time
(``latency(rows)``, the p99): a sum of p99s would overstate a queue many times over. The new request's
batch decides: it must end before the earliest deadline in it (the requests ahead do not wait for it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.config import ModelConfig
from gateway.core.selection.policy import QueueView

Latency = Callable[[int], float]
RUNNING_FLOOR = 0.1  # a batch running past its prediction is assumed to need a tenth of it more


@dataclass(frozen=True, slots=True)
class Plan:
    finish_s: float  # time.monotonic() when the new request's batch is predicted to end
    deadline_s: float  # the earliest deadline in that batch (inf: none)
    alone_s: float  # the new request's compute time on an idle variant

    def slack_s(self, overhead_s: float, margin_s: float) -> float:
        return self.deadline_s - margin_s - (self.finish_s + overhead_s)


@dataclass(frozen=True, slots=True)
class Shape:
    """How a variant batches, from its config."""

    batching: bool
    max_rows: int
    fire_rows: int  # a batch stops growing here (the largest preferred size, else max_batch_size)
    slots: int  # batches that run at once (instance count)
    delay_s: float  # max_queue_delay: how long a batch that is not full may wait

    @classmethod
    def of(cls, config: ModelConfig) -> Shape:
        db = config.dynamic_batching
        batching = db is not None and config.max_batch_size > 0
        max_rows = config.max_batch_size if config.max_batch_size > 0 else 1
        preferred = [p for p in (db.preferred_batch_sizes if db else ()) if 0 < p <= max_rows]
        return cls(
            batching=batching,
            max_rows=max_rows,
            fire_rows=max(preferred, default=max_rows) if batching else 1,
            slots=max(1, config.instance_count),
            delay_s=(db.max_queue_delay_us / 1e6) if db else 0.0,
        )


def plan(
    shape: Shape,
    queue: QueueView | None,
    rows: int,
    deadline_s: float | None,
    now_s: float,
    latency: Latency,
    typical: Latency | None = None,
) -> Plan:
    ahead = typical or latency
    free = [0.0] * shape.slots  # seconds from now until each instance is free
    running = sorted(queue.running(), key=lambda r: r[1]) if queue is not None else []
    for i, (r, started_ns) in enumerate(running[: shape.slots]):
        predicted = ahead(r)
        free[i] = max(started_ns / 1e9 + predicted - now_s, RUNNING_FLOOR * predicted)
    items = [(r, d / 1e9 if d else math.inf) for r, d in (queue.backlog() if queue is not None else ())]
    items.append((rows, math.inf if deadline_s is None else deadline_s))
    batches: list[tuple[int, float]] = []
    cur_rows, cur_deadline = 0, math.inf
    for r, d in items:
        if cur_rows and (not shape.batching or cur_rows >= shape.fire_rows or cur_rows + r > shape.max_rows):
            batches.append((cur_rows, cur_deadline))
            cur_rows, cur_deadline = 0, math.inf
        cur_rows, cur_deadline = cur_rows + r, min(cur_deadline, d)
    batches.append((cur_rows, cur_deadline))
    start = end = 0.0
    for n, (b, _) in enumerate(batches, 1):
        i = min(range(len(free)), key=free.__getitem__)
        start = free[i]
        end = free[i] = start + (latency(b) if n == len(batches) else ahead(b))
    last_rows, last_deadline = batches[-1]
    if shape.batching and start == 0.0 and last_rows < shape.fire_rows:
        end += shape.delay_s  # an idle batcher holds a batch that is not full for max_queue_delay
    return Plan(now_s + end, last_deadline, latency(rows))


def capacity(shape: Shape, latency: Latency, budget_s: float, typical: Latency | None = None) -> float:
    """Rows per second the variant sustains with every request inside ``budget_s``: the best batch size
    ``b`` whose request can wait out a typical batch and run in the next (tail time) within the budget; it
    sustains ``b / typical(b)``."""
    ahead = typical or latency
    best = 0.0
    for b in range(1, shape.fire_rows + 1):
        t, tail = ahead(b), latency(b)
        if t > 0 and t + tail <= budget_s:
            best = max(best, b / t)
    return best * shape.slots
