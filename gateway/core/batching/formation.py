"""How batches form, once: the batcher cuts its next batch with ``batches`` and the policy predicts with
``plan`` when a new request would finish, over the same function.

``batches`` is pure and generic (like Ray Serve's batch queue, it knows nothing of variants): it takes
queued items in queue order, each with its rows, its signature (requests with different signatures never
share a batch), its SLO deadline and when it was queued, and yields the batches Triton's dynamic batcher
forms from them when nothing else arrives. A batch takes items in order until the next would not fit
(``max_batch_size`` rows, or another signature) or it reaches the largest preferred size (``fire_rows``);
such a batch is complete and fires as soon as an instance is free. An incomplete one fires when the oldest
item has waited ``max_queue_delay``, or earlier when waiting longer would make one of its requests miss its
SLO deadline (twice the recent batch compute time and a tenth of its SLO are kept in hand), or earlier when
no more arrivals are expected in time (``quiet``: at once where requests mostly arrive alone, else once
twice the short gaps between recent arrivals have passed without one). ``quiet`` keeps Triton's semantics
as the bound: no request waits longer than Triton would make it. When it fires it
is cut back to the largest preferred size it can be cut at; the rest forms the next batch. A model without
dynamic batching runs each item alone. Every time is ``time.monotonic_ns()``, every duration nanoseconds.

``plan`` runs those batches, in order, on the variant's instances, each instance free once its running
batch ends. The batches ahead take their typical time (``typical(rows)``, the median), the new request's
batch its tail time (``latency(rows)``, the p99): a sum of p99s would overstate a queue many times over.
The new request's batch decides: it must end before the earliest deadline in it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from gateway.core.config import ModelConfig

Latency = Callable[[int], int]  # rows -> nanoseconds
RUNNING_FLOOR = 0.1  # a batch running past its prediction is assumed to need a tenth of it more
NO_DEADLINE = 2**63 - 1


class Queued(Protocol):
    """What batch formation reads of a queued request (``QueuedRequest`` is one)."""

    @property
    def rows(self) -> int: ...

    @property
    def signature(self) -> Hashable: ...

    @property
    def deadline_ns(self) -> int:  # when its SLO runs out; 0 = none
        ...

    @property
    def enqueued_ns(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Item:
    """A queued request as a prediction sees it."""

    rows: int
    signature: Hashable = None
    deadline_ns: int = 0
    enqueued_ns: int = 0


@dataclass(frozen=True, slots=True)
class Rules:
    """How a model's dynamic batcher forms batches, from its config."""

    batching: bool
    max_rows: int
    preferred: tuple[int, ...]  # sorted, each in [1, max_rows]
    delay_ns: int  # max_queue_delay: how long an incomplete batch may wait
    slots: int  # batches that run at once (instance count)

    @classmethod
    def of(cls, config: ModelConfig) -> Rules:
        db = config.dynamic_batching
        max_rows = config.max_batch_size if config.max_batch_size > 0 else 1
        preferred = sorted(p for p in (db.preferred_batch_sizes if db else ()) if 0 < p <= max_rows)
        return cls(
            batching=db is not None and config.max_batch_size > 0,
            max_rows=max_rows,
            preferred=tuple(preferred),
            delay_ns=(db.max_queue_delay_us if db else 0) * 1000,
            slots=max(1, config.instance_count),
        )

    @property
    def fire_rows(self) -> int:
        """A batch stops growing here: the largest preferred size, else ``max_batch_size`` (1 unbatched)."""
        if not self.batching:
            return 1
        return self.preferred[-1] if self.preferred else self.max_rows


Q = TypeVar("Q", bound=Queued)


@dataclass(frozen=True, slots=True)
class Batch(Generic[Q]):
    items: tuple[Q, ...]
    rows: int
    fire_ns: int  # when it fires if nothing more arrives; 0 = complete: as soon as an instance is free

    @property
    def deadline_ns(self) -> int:
        """The earliest SLO deadline in the batch (0 = none)."""
        return min((it.deadline_ns for it in self.items if it.deadline_ns), default=0)


def batches(queue: Iterable[Q], rules: Rules, compute_ns: int = 0, quiet_ns: int = 0) -> Iterator[Batch[Q]]:
    """The batches ``queue`` (in queue order) forms, first to last; lazy: the batcher takes only the first.
    ``compute_ns`` is the recent batch compute time (0 before any), for firing early on deadlines.
    ``quiet_ns`` (0 = Triton's rule) is how long without an arrival ends the wait for more (``quiet``)."""
    source = iter(queue)
    back: deque[Q] = deque()  # read but not batched yet (the next batch starts with them)
    while True:
        group: list[Q] = []
        rows, complete = 0, False
        while True:
            it = back.popleft() if back else next(source, None)
            if it is None:
                break
            if group and (
                not rules.batching or it.signature != group[0].signature or rows + it.rows > rules.max_rows
            ):
                back.appendleft(it)
                complete = True
                break
            group.append(it)
            rows += it.rows
            if rows >= rules.fire_rows:
                complete = True
                break
        if not group:
            return
        fire_ns = 0 if complete else _due_ns(group, rules, compute_ns, quiet_ns)
        n = _cut(group, rules)
        back.extendleft(reversed(group[n:]))
        yield Batch(tuple(group[:n]), sum(it.rows for it in group[:n]), fire_ns)


def _due_ns(group: Sequence[Queued], rules: Rules, compute_ns: int, quiet_ns: int = 0) -> int:
    """When an incomplete batch fires: its oldest request's ``max_queue_delay`` runs out, or earlier where
    a request's SLO deadline would be missed otherwise, or ``quiet_ns`` after the newest arrival when that
    is sooner. (An incomplete batch holds every item left.)"""
    due = min(it.enqueued_ns for it in group) + rules.delay_ns
    if quiet_ns:
        due = min(due, max(it.enqueued_ns for it in group) + quiet_ns)
    for it in group:
        if it.deadline_ns:
            slack = 2 * compute_ns + (it.deadline_ns - it.enqueued_ns) // 10
            due = min(due, it.deadline_ns - slack)
    return max(1, due)


def _cut(group: Sequence[Queued], rules: Rules) -> int:
    """How many of ``group`` go: all, or up to the largest preferred size they can be cut at."""
    total = sum(it.rows for it in group)
    if not rules.preferred or total in rules.preferred or total >= rules.max_rows:
        return len(group)
    n, rows = len(group), 0
    for i, it in enumerate(group):
        rows += it.rows
        if rows in rules.preferred:
            n = i + 1
    return n


@dataclass(frozen=True, slots=True)
class Plan:
    finish_ns: int  # time.monotonic_ns() when the new request's batch is predicted to end
    deadline_ns: int  # the earliest deadline in that batch (NO_DEADLINE: none)
    alone_ns: int  # the new request's compute time on an idle variant

    def slack_ns(self, overhead_ns: int, margin_ns: int) -> int:
        return self.deadline_ns - margin_ns - (self.finish_ns + overhead_ns)


def plan(
    rules: Rules,
    backlog: Sequence[Queued],
    running: Sequence[tuple[int, int]],
    new: Item,
    now_ns: int,
    latency: Latency,
    *,
    typical: Latency | None = None,
    compute_ns: int = 0,
    deadline_ns: int | None = None,
) -> Plan:
    """When ``new`` (queued now, behind ``backlog``) would finish, with ``running`` ``(rows, started_ns)``
    batches on the instances. ``deadline_ns`` (default: ``new``'s own) is the new request's deadline for
    its batch's, if tighter (a client's deadline); ``compute_ns`` is the batcher's recent batch time."""
    ahead = typical or latency
    free = [0] * rules.slots  # nanoseconds from now until each instance is free
    for i, (r, started_ns) in enumerate(sorted(running, key=lambda b: b[1])[: rules.slots]):
        predicted = ahead(r)
        free[i] = max(started_ns + predicted - now_ns, round(RUNNING_FLOOR * predicted))
    formed = list(batches([*backlog, new], rules, compute_ns))
    end = 0
    for n, batch in enumerate(formed, 1):
        i = min(range(len(free)), key=free.__getitem__)
        start = max(free[i], batch.fire_ns - now_ns if batch.fire_ns else 0)
        end = free[i] = start + (latency(batch.rows) if n == len(formed) else ahead(batch.rows))
    deadlines = [d for d in (formed[-1].deadline_ns, deadline_ns or 0) if d]
    return Plan(now_ns + end, min(deadlines, default=NO_DEADLINE), latency(new.rows))


QUIET_GAPS = 32  # arrivals whose gaps ``quiet`` reads
QUIET_FLOOR_NS = 50_000  # an arrival this soon after another is part of the same burst
ALONE = -1  # an arrival that found nothing else queued or running (a gap of its own is not a burst's)


def quiet(gaps_ns: Sequence[int], delay_ns: int) -> int:
    """How long without an arrival ends an incomplete batch's wait (0 = Triton's rule, wait out the
    delay; 1 = fire at once), from the recent arrivals: each one's gap to the one before, or ``ALONE`` when
    it found nothing else queued or running. Where most arrivals come alone (a lone client: it sends again
    only once answered), waiting gathers nobody: fire at once. Otherwise wait twice the lower quartile of
    the gaps: a closed loop's burst of arrivals after a batch returns has tiny gaps, so the batch waits for
    the burst and no longer; when that wait is as long as the delay, Triton's rule stands."""
    if len(gaps_ns) < 4 or delay_ns <= 0:
        return 0
    company = sorted(g for g in gaps_ns if g != ALONE)
    if len(company) * 2 < len(gaps_ns):
        return 1
    short = company[len(company) // 4]  # a quarter of arrivals come this close after another
    wait = max(2 * short, QUIET_FLOOR_NS)
    return 0 if wait >= delay_ns else wait


def capacity(rules: Rules, latency: Latency, budget_ns: int, typical: Latency | None = None) -> float:
    """Rows per second the variant sustains with every request inside ``budget_ns``: the best batch size
    ``b`` whose request can wait out a typical batch and run in the next (tail time) within the budget; it
    sustains ``b / typical(b)``."""
    ahead = typical or latency
    best = 0.0
    for b in range(1, rules.fire_rows + 1):
        t, tail = ahead(b), latency(b)
        if t > 0 and t + tail <= budget_ns:
            best = max(best, b * 1e9 / t)
    return best * rules.slots
