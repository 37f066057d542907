"""The per-batch variant choice of late binding, pure: given a logical model's queue in deadline order, the
variants it may bind to and the compute pool's state, which variant runs the next batch and which requests
it takes. ``late.LateBinding`` calls it whenever the pool can take a batch.

For each variant, most accurate first, the batch is the first one ``formation.batches`` forms from the queue
with that variant's rules (work-conserving: it runs now, complete or not), or where that one would be late
a prefix of it (half as many requests, down to the most urgent alone), from the requests whose
``max_accuracy_loss`` admits the variant; it must include the queue's most urgent request. The pool says how
it would run (``wide`` when the pool is idle and nothing waits behind it, else ``narrow``); the latency model
predicts its tail time in that mode at its rows and sequence length. The variant is *feasible* when every
request in the batch ends by its deadline minus the safety margin, counting the gateway's own overhead, and
the requests left behind stay feasible on the fastest variant (the batches they form, on the slots as
they come free, at typical times, ``HORIZON_BATCHES`` deep) — unless they would not be even with this
batch on the fastest, in which case what waits behind decides nothing. The choice is the first feasible
variant within the accuracy budget, else the first feasible one beyond it that the running mean loss
admits, else the one with the earliest answer (``Choice.feasible`` False: ``--slo-infeasible`` decides). A
batch without deadlines takes the most accurate variant.
Nanoseconds and ``time.monotonic_ns()`` throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.core.batching.formation import Rules, batches
from gateway.core.batching.pool import FIXED, NARROW, REMOTE, WIDE, ComputePool, Mode
from gateway.core.batching.queue import QueuedRequest
from gateway.core.selection.slo import Reason

HORIZON_BATCHES = 4  # what waits behind is checked this many full batches per slot deep
# (variant, rows, mode, sequence length, quantile or None for the tail) -> nanoseconds
Predict = Callable[[str, int, Mode, int, "float | None"], int]


@dataclass(frozen=True, slots=True)
class Option:
    """A variant the next batch may bind to."""

    name: str
    rules: Rules
    loss: float  # the card's relative accuracy loss
    within_budget: bool  # its loss is within the accuracy budget
    admitted: bool = True  # beyond the budget: whether the running mean loss admits it now


@dataclass(frozen=True, slots=True)
class Pool:
    """What the choice reads of the compute pool."""

    free_at_ns: tuple[int, ...]  # when each slot comes free (now for a free one), ascending
    mode_alone: Mode  # the mode of a batch with nothing behind it
    mode_shared: Mode = NARROW  # the mode of a batch with others waiting


@dataclass(frozen=True, slots=True)
class Choice:
    variant: Option | None  # None: no variant can take the most urgent request at all
    items: tuple[QueuedRequest, ...]
    mode: Mode
    predicted_ns: int  # the batch's predicted tail time
    reason: Reason
    feasible: bool = True  # False: nothing is in time; ``variant`` is the one with the earliest answer


def choose(
    queue: Sequence[QueuedRequest],
    options: Sequence[Option],
    pool: Pool,
    predict: Predict,
    now_ns: int,
    overhead_ns: int,
    margin: Callable[[QueuedRequest], int],
) -> Choice:
    """``queue`` in deadline order (most urgent first), ``options`` most accurate first (never empty)."""
    fastest = options[-1]
    formed = [_formed(queue, o, pool, predict) for o in options]
    if not any(it.deadline_ns for it in queue):
        first = next((f for f in formed if f), None)
        if first:
            items, mode, tail = first[0]
            return Choice(options[formed.index(first)], items, mode, tail, Reason.NO_SLO)
    behind_any: bool | None = None  # whether the rest can be in time at all (the head alone, fastest)
    for i, (option, sizes) in enumerate(zip(options, formed, strict=True)):
        if not sizes or not (option.within_budget or option.admitted):
            continue
        for items, mode, tail in sizes:  # the largest batch first, then smaller ones
            finish = now_ns + tail + overhead_ns
            if any(it.deadline_ns and finish > it.deadline_ns - margin(it) for it in items):
                continue
            if option is not fastest and not _behind_ok(
                queue, items, tail, mode, fastest, pool, predict, now_ns, overhead_ns, margin
            ):
                if behind_any is None:  # the fastest for this batch is the best what waits behind can have
                    ff = formed[-1][-1] if formed[-1] else None
                    behind_any = ff is not None and _behind_ok(
                        queue, ff[0], ff[2], ff[1], fastest, pool, predict, now_ns, overhead_ns, margin
                    )
                if behind_any:
                    continue
            reason = (
                Reason.AGGRESSIVE if not option.within_budget else Reason.SLO if i == 0 else Reason.STEP_DOWN
            )
            return Choice(option, items, mode, tail, reason)
    usable = [(o, f[-1]) for o, f in zip(options, formed, strict=True) if f]
    allowed = [(o, f) for o, f in usable if o.within_budget or o.admitted]
    usable = allowed or usable
    if not usable:
        return Choice(None, (), pool.mode_alone, 0, Reason.FASTEST, False)
    option, (items, mode, tail) = min(usable, key=lambda of: of[1][2])  # the earliest answer
    return Choice(option, items, mode, tail, Reason.FASTEST, False)


Formed = tuple[tuple[QueuedRequest, ...], Mode, int]  # a batch's items, its mode, its predicted tail time


def _formed(queue: Sequence[QueuedRequest], option: Option, pool: Pool, predict: Predict) -> list[Formed]:
    """The batches ``option`` could run now, largest first: the one ``formation.batches`` forms, then its
    prefixes of half as many requests, down to the most urgent alone (a smaller batch ends sooner: where
    the whole one would be late, a part of it may not). Empty when it cannot take the most urgent request."""
    if not queue:
        return []
    head = queue[0]
    if head.rows > option.rules.max_rows or head.max_loss < option.loss:
        return []
    eligible = [it for it in queue if it.max_loss >= option.loss and it.rows <= option.rules.max_rows]
    items = next(batches(eligible, option.rules)).items
    out: list[Formed] = []
    n = len(items)
    while n >= 1:
        part = items[:n]
        mode = pool.mode_alone if n == len(queue) else pool.mode_shared
        rows, length = sum(it.rows for it in part), max(it.length for it in part)
        out.append((part, mode, predict(option.name, rows, mode, length, None)))
        n = n // 2 if n > 1 else 0
    return out


def _behind_ok(
    queue: Sequence[QueuedRequest],
    taken: Sequence[QueuedRequest],
    tail_ns: int,
    mode: Mode,
    fastest: Option,
    pool: Pool,
    predict: Predict,
    now_ns: int,
    overhead_ns: int,
    margin: Callable[[QueuedRequest], int],
) -> bool:
    """Whether what waits behind ``taken`` (running ``tail_ns`` from now) still ends in time on the fastest
    variant: its batches run in order on the slots as they come free, each taking its typical time."""
    chosen = {id(it) for it in taken}
    horizon = HORIZON_BATCHES * fastest.rules.fire_rows * max(1, len(pool.free_at_ns))
    rest: list[QueuedRequest] = []
    for it in queue:  # the most urgent of those behind: later ones are checked by later batches
        if id(it) not in chosen:
            rest.append(it)
            horizon -= it.rows
            if horizon <= 0:
                break
    if not rest:
        return True
    free = list(pool.free_at_ns)
    if mode == WIDE:  # a wide batch holds every slot
        free = [max(now_ns + tail_ns, f) for f in free]
    elif free:
        free[0] = max(free[0], now_ns + tail_ns)
    free = free or [now_ns + tail_ns]
    for batch in batches(rest, fastest.rules):
        i = min(range(len(free)), key=free.__getitem__)
        length = max(it.length for it in batch.items)
        end = max(free[i], now_ns) + predict(fastest.name, batch.rows, pool.mode_shared, length, 0.5)
        free[i] = end
        for it in batch.items:
            if it.deadline_ns and end + overhead_ns > it.deadline_ns - margin(it):
                return False
    return True


def pool_view(pool: ComputePool, now_ns: int, remote: bool = False) -> Pool:
    """What the choice reads of ``pool`` now, of its local slots or (``remote``) of its remote ones: a
    running batch frees its slot at its predicted end (a pinned batch predicts its batcher's recent time)."""
    if remote:
        free = [now_ns] * pool.remote_free
        free += [max(now_ns, g.started_ns + g.predicted_ns) for g in pool.running(remote=True)]
        return Pool(tuple(sorted(free)), REMOTE, REMOTE)
    free = [now_ns] * pool.free
    for g in pool.running():
        free += [max(now_ns, g.started_ns + g.predicted_ns)] * g.slots
    return Pool(tuple(sorted(free)), pool.mode_for(alone=True), NARROW if pool.adaptive else FIXED)


def deadline_order(queue: Iterable[QueuedRequest]) -> list[QueuedRequest]:
    """The queue in the order batches take it: priority levels in turn; inside one, earliest deadline
    first, requests without an SLO last, then arrival."""
    out: list[QueuedRequest] = []
    level: list[QueuedRequest] = []
    current: tuple[int, bool] | None = None
    for it in queue:  # levels in turn, each one's delayed requests (queue policy DELAY) after the rest
        if (it.level, it.delayed) != current and level:
            out += sorted(level, key=urgency)
            level = []
        current = (it.level, it.delayed)
        level.append(it)
    return out + sorted(level, key=urgency)


def urgency(it: QueuedRequest) -> tuple[bool, int, int]:
    return (not it.deadline_ns, it.deadline_ns, it.enqueued_ns)
