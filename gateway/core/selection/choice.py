"""The per-batch variant choice of late binding, pure: given a logical model's queue in deadline order, the
variants it may bind to and the compute pool's state, which variant runs the next batch and which requests
it takes. ``late.LateBinding`` calls it whenever the pool can take a batch.

With ``--slo-infeasible shed``, first the requests no choice can save are set apart and refused
(``hopeless``: late even if the whole queue ran on the fastest usable variant, judged as a batch's own
requests are, in deadline order, without the other hopeless ones, ``choice_plan.hopeless``), and while
any are, no variant slower than the fastest within the budget is weighed; otherwise they are batched like
the rest, and count as misses whatever the choice. For each variant the accuracy budget lets the batch
have (within it, or beyond it as far as the running mean loss admits), most accurate
first, the candidate batches are the one ``formation.batches`` forms from the queue with that variant's
rules (work-conserving: it runs now, complete or not) and its prefixes of half as many requests, down to the
most urgent alone. The pool says how each would run (``wide`` when the pool is idle and nothing waits behind
it, else ``narrow``) and the latency model predicts its time in that mode at its rows and sequence length
(``OWN_QUANTILE``). A candidate is judged on the most urgent requests and then those expected to arrive next
at the recent rate (``HORIZON_BATCHES`` full batches per slot in all): its own requests end at its predicted
time; the rest run behind it on the fastest variant within the budget, work-conserving, each slot as it
comes free taking what has arrived by then, at typical (p50) times; a request misses when it ends after its
deadline minus the safety margin, counting the gateway's own overhead. The expected arrivals are what keeps
a greedy choice honest: a slow variant's batch now is paid for by the requests that arrive while it runs.
The first candidate with no miss is the choice (the most accurate variant, its largest batch that saves
everyone); when every candidate misses some, the full batch (of each variant) with the fewest misses, then
the one that frees the pool soonest, then the shortest. A shorter batch is taken only when it saves
everyone, or when it is a full batch's share of the slots free now (half of it with two free: the rest
runs beside it at once, where a single-threaded session's time grows with its rows): otherwise under
overload its count is flattered (the simulation runs full batches behind it), and choosing it decision after
decision cut the pool's throughput to a fraction (batches of 2-4 rows with hundreds queued).
``Choice.feasible`` says whether the batch's own requests are in time. A batch without deadlines takes the
most accurate variant. Nanoseconds and ``time.monotonic_ns()`` throughout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from gateway.core.batching.pool import FIXED, NARROW, REMOTE, ComputePool, Mode
from gateway.core.batching.queue import QueuedRequest
from gateway.core.selection.choice_plan import (
    HORIZON_BATCHES,
    Margin,
    Memo,
    Option,
    Pool,
    Predict,
    Waiting,
    behind,
    formed,
    hopeless,
    horizon,
    late_in,
)
from gateway.core.selection.slo import Reason


@dataclass(frozen=True, slots=True)
class Choice:
    variant: Option | None  # None: no variant can take the most urgent request at all
    items: tuple[QueuedRequest, ...]
    mode: Mode
    predicted_ns: int  # the batch's predicted tail time
    reason: Reason
    feasible: bool = True  # False: some of the batch's own requests are predicted late
    hopeless: tuple[QueuedRequest, ...] = ()  # set apart: late whatever runs them (not in ``items``)
    misses: int = 0  # predicted misses among the most urgent requests, this batch and those behind it


def choose(
    queue: Sequence[QueuedRequest],
    options: Sequence[Option],
    pool: Pool,
    predict: Predict,
    now_ns: int,
    overhead_ns: int,
    margin: Margin,
    expected: Sequence[Waiting] = (),
    set_apart: bool = True,
) -> Choice:
    """``queue`` in deadline order (most urgent first), ``options`` most accurate first (never empty);
    ``expected``: the requests expected to arrive next (``choice_plan.expected``), in arrival order;
    ``set_apart``: whether hopeless requests are set apart (to be shed) or batched like the rest."""
    predict = Memo(predict)
    usable = [o for o in options if o.within_budget or o.admitted] or list(options)
    lost = hopeless(queue, usable[-1], pool, predict, now_ns, overhead_ns, margin) if set_apart else set()
    if lost:  # overloaded: no time for a variant slower than the fastest within the budget (it would have
        # saved some of those shed)
        usable = usable[_fastest_within(usable) or 0 :]
    live = [it for it in queue if id(it) not in lost]
    dropped = tuple(it for it in queue if id(it) in lost)
    if not live:  # only certain misses: the earliest answer for them, served late
        for option in reversed(usable):
            if sizes := formed(queue, option, pool, predict):
                items, mode, tail = sizes[0]
                return Choice(option, items, mode, tail, Reason.FASTEST, False, dropped, len(queue))
        return Choice(None, (), pool.mode_alone, 0, Reason.FASTEST, False, dropped)
    if not any(it.deadline_ns for it in live):
        for option in options:
            if sizes := formed(live, option, pool, predict):
                items, mode, tail = sizes[0]
                return Choice(option, items, mode, tail, Reason.NO_SLO, hopeless=dropped)
    best = _best(live, expected, options, usable, pool, predict, now_ns, overhead_ns, margin)
    if best is None and len(usable) < len(options):  # none the budget allows can take the head
        best = _best(live, expected, options, options, pool, predict, now_ns, overhead_ns, margin)
    if best is None:
        return Choice(None, (), pool.mode_alone, 0, Reason.FASTEST, False, dropped)
    return replace(best, hopeless=dropped)


def _best(
    live: Sequence[QueuedRequest],
    expected: Sequence[Waiting],
    options: Sequence[Option],
    usable: Sequence[Option],
    pool: Pool,
    predict: Predict,
    now_ns: int,
    overhead_ns: int,
    margin: Margin,
) -> Choice | None:
    """The first candidate with no predicted miss, else the full batch with the fewest; ``None`` when no
    variant of ``usable`` can take the most urgent request."""
    k = _fastest_within(usable)
    fastest = usable[-1] if k is None else usable[k]
    window = horizon(live, expected, fastest, pool)
    idle = sum(1 for f in pool.free_at_ns if f <= now_ns)  # slots free now: a batch may be split over them
    best: tuple[tuple[int, int, int], Choice] | None = None
    for option in usable:
        sizes = formed(live, option, pool, predict)
        for items, mode, tail in sizes:
            own = late_in(items, now_ns + tail + overhead_ns, margin)
            taken = {id(it) for it in items}
            rest = [it for it in window if id(it) not in taken]
            later, end = behind(rest, tail, mode, fastest, pool, predict, now_ns, overhead_ns, margin)
            reason = _reason(option, options) if not own else Reason.FASTEST
            if not own + later:
                return Choice(option, items, mode, tail, reason)
            whole = (len(items) + 1) * max(1, idle) > len(sizes[0][0])  # a full batch, or its share of one
            if whole and (best is None or (own + later, end, tail) < best[0]):
                best = (
                    (own + later, end, tail),
                    Choice(option, items, mode, tail, reason, not own, (), own + later),
                )
    return None if best is None else best[1]


def _fastest_within(usable: Sequence[Option]) -> int | None:
    """The index of the fastest (last) option within the accuracy budget; ``None`` when none is."""
    return next((k for k in range(len(usable) - 1, -1, -1) if usable[k].within_budget), None)


def _reason(option: Option, options: Sequence[Option]) -> Reason:
    if not option.within_budget:
        return Reason.AGGRESSIVE
    return Reason.SLO if option is options[0] else Reason.STEP_DOWN


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


__all__ = [
    "HORIZON_BATCHES",
    "Choice",
    "Option",
    "Pool",
    "Predict",
    "choose",
    "deadline_order",
    "pool_view",
    "urgency",
]
