"""What ``choice.choose`` weighs, pure: the batches a variant could run now, the requests that cannot be in
time on any variant, and how many of the requests waiting behind a batch would then miss their deadlines.
Nanoseconds and ``time.monotonic_ns()`` throughout."""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol

from gateway.core.batching.formation import Queued, Rules, batches
from gateway.core.batching.pool import WIDE, Mode
from gateway.core.batching.queue import QueuedRequest

# a batch's own requests are judged at this quantile of its time: the p99 of a shared 2-core machine is
# twice its median, and judged at it, under load only the smallest batches pass and throughput collapses;
# the safety margin (``SloConfig.margin_fraction``) is kept on top
OWN_QUANTILE = 0.9
HORIZON_BATCHES = 4  # what waits behind is planned this many full batches per slot deep
CLUMP_QUANTILE = 0.95  # the arrivals expected next: this quantile of a Poisson count at the recent rate
# (variant, rows, mode, sequence length, quantile or None for the tail) -> nanoseconds
Predict = Callable[[str, int, Mode, int, "float | None"], int]


class Waiting(Queued, Protocol):
    """What the look-behind reads of a request, queued or expected (``QueuedRequest`` is one)."""

    @property
    def length(self) -> int: ...


Margin = Callable[[Waiting], int]


@dataclass(frozen=True, slots=True)
class Expected:
    """A request expected to arrive at ``enqueued_ns``, shaped like the logical model's latest one."""

    rows: int
    signature: object
    deadline_ns: int
    enqueued_ns: int
    length: int


@dataclass(frozen=True, slots=True)
class Option:
    """A variant the next batch may bind to."""

    name: str
    rules: Rules
    loss: float  # the card's relative accuracy loss
    within_budget: bool  # its loss is within the accuracy budget
    admitted: bool = True  # beyond the budget: whether the running mean loss admits it now
    room: int = 1 << 30  # beyond the budget: how many requests in one batch the running mean admits


@dataclass(frozen=True, slots=True)
class Pool:
    """What the choice reads of the compute pool."""

    free_at_ns: tuple[int, ...]  # when each slot comes free (now for a free one), ascending
    mode_alone: Mode  # the mode of a batch with nothing behind it
    mode_shared: Mode  # the mode of a batch with others waiting


Formed = tuple[tuple[QueuedRequest, ...], Mode, int]  # a batch's items, its mode, its predicted tail time


class Memo:
    """``predict``, each distinct question asked once per decision (most requests share their shape)."""

    def __init__(self, predict: Predict) -> None:
        self._predict, self._seen = predict, dict[tuple[str, int, Mode, int, float | None], int]()

    def __call__(self, name: str, rows: int, mode: Mode, length: int, q: float | None) -> int:
        key = (name, rows, mode, length, q)
        out = self._seen.get(key)
        if out is None:
            out = self._seen[key] = self._predict(name, rows, mode, length, q)
        return out


def hopeless(
    queue: Sequence[QueuedRequest],
    fastest: Option,
    pool: Pool,
    predict: Predict,
    now_ns: int,
    overhead_ns: int,
    margin: Margin,
) -> set[int]:
    """The ids of the requests of ``queue`` (deadline order) that would be late even if the whole queue ran
    on ``fastest`` at ``OWN_QUANTILE`` of its time, in that order, each slot as it comes free taking the
    largest batch (``formation.batches``, then halves) whose requests all end in time (inside their
    margins, as a chosen batch must), and every request found
    hopeless were dropped: a head late even alone is hopeless, and the rest move up. Shedding only what is
    late alone is not enough under overload: earliest deadline first then serves the most urgent, late,
    and makes those behind it late in turn. Judged at the typical (p50) time without the margin, what was
    kept under overload was packed so tight that about half of it ended late after all (measured: at 1.5x
    int8's capacity, 15-20 % of deadlines met against 37-39 % judged as a batch is). Requests without an
    SLO are never hopeless."""
    out: set[int] = set()
    free = sorted(max(now_ns, f) for f in pool.free_at_ns) or [now_ns]
    waiting = deque(it for it in queue if it.deadline_ns)
    mode, most = pool.mode_shared, 2 * fastest.rules.max_rows
    while waiting:  # each step touches only the head (``most`` requests), not the whole queue
        head = [waiting.popleft() for _ in range(min(most, len(waiting)))]
        items = next(batches(head, fastest.rules)).items
        start = free[0]
        n, end = len(items), start
        while n:
            part = items[:n]
            rows, length = sum(it.rows for it in part), max_length(part)
            end = start + predict(fastest.name, rows, mode, length, OWN_QUANTILE)
            if not late_in(part, end + overhead_ns, margin):
                break
            n //= 2
        if n:
            taken = {id(it) for it in items[:n]}
            free[0] = end
            free.sort()
        else:
            taken = {id(head[0])}
            out |= taken
        waiting.extendleft(reversed([it for it in head if id(it) not in taken]))
    return out


def max_length(items: Sequence[Waiting]) -> int:
    return max(it.length for it in items)


def formed(queue: Sequence[QueuedRequest], option: Option, pool: Pool, predict: Predict) -> list[Formed]:
    """The batches ``option`` could run now, largest first: the one ``formation.batches`` forms from the
    requests whose ``max_accuracy_loss`` admits it (beyond the budget, no more than its ``room``: a whole
    batch must fit the budget, not just one request), then its prefixes of half as many requests, down to
    the most urgent alone (where the whole batch would make its first requests late, a part of it may
    not). Empty when the variant cannot take the most urgent request."""
    if not queue:
        return []
    head = queue[0]
    if head.rows > option.rules.max_rows or head.max_loss < option.loss:
        return []
    eligible = [it for it in queue if it.max_loss >= option.loss and it.rows <= option.rules.max_rows]
    items = next(batches(eligible, option.rules)).items[: max(1, option.room)]
    out: list[Formed] = []
    n = len(items)
    while n >= 1:
        part = items[:n]
        mode = pool.mode_alone if n == len(queue) else pool.mode_shared
        rows, length = sum(it.rows for it in part), max_length(part)
        out.append((part, mode, predict(option.name, rows, mode, length, OWN_QUANTILE)))
        n //= 2
    return out


def horizon(
    queue: Sequence[QueuedRequest], expected: Sequence[Waiting], fastest: Option, pool: Pool
) -> list[Waiting]:
    """The most urgent requests, then those expected next, ``HORIZON_BATCHES`` full batches of ``fastest``
    per slot: what a choice is judged on (later ones are judged by later choices)."""
    budget = HORIZON_BATCHES * fastest.rules.fire_rows * max(1, len(pool.free_at_ns))
    out: list[Waiting] = []
    for it in itertools.chain(queue, expected):
        out.append(it)
        budget -= it.rows
        if budget <= 0:
            break
    return out


def late_in(items: Sequence[Waiting], end_ns: int, margin: Margin) -> int:
    """How many of ``items`` end after their deadline minus the safety margin, ending at ``end_ns``
    (the gateway's own overhead included)."""
    return sum(1 for it in items if it.deadline_ns and end_ns > it.deadline_ns - margin(it))


def behind(
    rest: Sequence[Waiting],
    tail_ns: int,
    mode: Mode,
    fastest: Option,
    pool: Pool,
    predict: Predict,
    now_ns: int,
    overhead_ns: int,
    margin: Margin,
) -> tuple[int, int]:
    """What waits behind a batch that runs ``tail_ns`` from now, queued or expected (``rest``, in deadline
    order), when the best it can have is ``fastest``: work-conserving, each slot as it comes free takes the
    batch that has arrived by then (or waits for the next arrival) and runs it at its typical time. The
    number of its requests that would miss their deadlines, and when the last slot comes free."""
    free = list(pool.free_at_ns)
    if mode == WIDE:  # a wide batch holds every slot
        free = [max(now_ns + tail_ns, f) for f in free]
    elif free:
        free[0] = max(free[0], now_ns + tail_ns)
    free = free or [now_ns + tail_ns]
    misses, waiting = 0, deque(rest)
    while waiting:
        i = min(range(len(free)), key=free.__getitem__)
        start = max(free[i], now_ns, min(it.enqueued_ns for it in waiting))
        arrived = [it for it in waiting if it.enqueued_ns <= start]
        batch = next(batches(arrived, fastest.rules))
        for it in batch.items:
            waiting.remove(it)
        length = max_length(batch.items)
        free[i] = start + predict(fastest.name, batch.rows, pool.mode_shared, length, 0.5)
        misses += late_in(batch.items, free[i] + overhead_ns, margin)
    return misses, max(free)


def clump(mean: float, q: float = CLUMP_QUANTILE) -> int:
    """The ``q`` quantile of a Poisson count of mean ``mean`` (normal approximation above 30): how many
    requests to plan for where ``mean`` are expected on average."""
    if mean <= 0:
        return 0
    if mean > 30:
        return math.ceil(mean + NormalDist().inv_cdf(q) * math.sqrt(mean))
    k, term = 0, math.exp(-mean)
    total = term
    while total < q:
        k += 1
        term *= mean / k
        total += term
    return k


def expected(
    template: Waiting | None, arrivals_ns: Sequence[int], now_ns: int, window_ns: int, count: int
) -> list[Expected]:
    """Up to ``count`` requests expected over the next SLO, evenly spaced, each shaped like ``template``
    (the latest request): as many as a Poisson process at the rate of ``arrivals_ns`` (ascending) over the
    last ``window_ns`` brings in an SLO in ``CLUMP_QUANTILE`` of cases (``clump``), not its mean: the plan
    must hold when requests clump, and at the mean it did not (at half of fp32's capacity late binding
    missed more deadlines than static int8)."""
    if template is None or not template.deadline_ns or count <= 0:
        return []
    recent = sum(1 for _ in itertools.takewhile(lambda t: t > now_ns - window_ns, reversed(arrivals_ns)))
    if not recent:
        return []
    slo = template.deadline_ns - template.enqueued_ns
    n = min(count, clump(recent * slo / window_ns))
    gap = slo / max(1, n)
    out = []
    for k in range(1, n + 1):
        at = now_ns + round(k * gap)
        out.append(Expected(template.rows, template.signature, at + slo, at, template.length))
    return out
