"""Late binding's per-batch choice (``selection.choice.choose``) on its own: a queue, three variants, a
two-slot pool and a latency model given as numbers, so each decision can be worked out by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.core.batching.formation import Rules
from gateway.core.batching.pool import NARROW, WIDE, Mode
from gateway.core.batching.queue import QueuedRequest
from gateway.core.selection.choice import Choice, Option, Pool, choose
from gateway.core.selection.choice_plan import Waiting, clump, expected
from gateway.core.selection.slo import Reason

MS = 1_000_000
NOW = 10_000 * MS
SLO = 60 * MS
RULES = Rules(batching=True, max_rows=16, preferred=(), delay_ns=0, slots=1)
FP32 = Option("fp32", RULES, 0.0, True)
INT8 = Option("int8", RULES, 0.009, True)
FAST = Option("fast", RULES, 0.047, False, admitted=False)  # beyond the budget, not admitted now
OPTIONS = [FP32, INT8, FAST]
PER_ROW = {"fp32": 10 * MS, "int8": 5 * MS, "fast": 3 * MS}  # narrow; wide is twice as fast
IDLE = Pool((NOW, NOW), WIDE, NARROW)


def predict(name: str, rows: int, mode: Mode, length: int, q: float | None) -> int:
    """Linear in rows, a row's cost a third more at the tail than typically (p50)."""
    t = PER_ROW[name] * (2 + rows) // 3
    t = t // 2 if mode == WIDE else t
    return t if q == 0.5 else t * 4 // 3


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def queued(loop: asyncio.AbstractEventLoop, ages_ms: list[float], slo: int = SLO) -> list[QueuedRequest]:
    """Requests of one row queued ``ages_ms`` before now, most urgent (oldest) first."""
    out = []
    for age in sorted(ages_ms, reverse=True):
        at = NOW - round(age * MS)
        it = QueuedRequest({}, 1, 0, (("s", (1,)),), at, loop.create_future(), deadline_ns=at + slo)
        it.length = 64
        out.append(it)
    return out


def decide(queue: list[QueuedRequest], pool: Pool = IDLE, ahead: list[Waiting] | None = None) -> Choice:
    return choose(queue, OPTIONS, pool, predict, NOW, MS, lambda it: 2 * MS, ahead or [])


def test_an_idle_pool_and_no_arrivals_take_the_most_accurate_variant_for_the_whole_queue(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = queued(loop, [3, 2, 1])
    choice = decide(queue)
    assert choice.variant is FP32 and choice.reason is Reason.SLO
    assert choice.items == tuple(queue) and choice.mode == WIDE
    assert choice.misses == 0 and choice.feasible and not choice.hopeless


def test_arrivals_expected_at_a_high_rate_move_the_batch_to_a_faster_variant(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Three rows of fp32 take 22 ms narrow at the tail, in time alone. The requests planned to arrive
    while they run (85 in the next SLO: the 95th percentile of a Poisson count at the recent rate of one
    every 0.85 ms) would not all be in time behind them, even on int8: int8 now saves every one (the
    simulation is worked out in ``choice_plan.behind``)."""
    queue = queued(loop, [3, 2, 1])
    busy = Pool((NOW, NOW + 20 * MS), NARROW, NARROW)
    assert decide(queue, busy).variant is FP32
    gap = 850_000
    arrivals = [NOW - k * gap for k in range(588 - 1, -1, -1)]  # 588 in the last 500 ms
    ahead: list[Waiting] = list(expected(queue[-1], arrivals, NOW, 500 * MS, 1024))
    # 70.6 on average in an SLO; planned for 85, the 95th percentile of a Poisson count of that mean
    assert clump(588 * 60 / 500) == 85 and len(ahead) == 85
    assert abs(ahead[0].enqueued_ns - (NOW + SLO / 85)) < 1000
    assert all(a.deadline_ns - a.enqueued_ns == SLO for a in ahead)
    choice = decide(queue, busy, ahead)
    assert choice.variant is INT8 and choice.reason is Reason.STEP_DOWN and choice.misses == 0
    slower = [NOW - k * 4 * MS for k in range(124, -1, -1)]  # one every 4 ms: fp32 stays
    assert decide(queue, busy, list(expected(queue[-1], slower, NOW, 500 * MS, 1024))).variant is FP32


def test_under_overload_the_hopeless_are_set_apart_and_the_rest_go_to_the_fastest_within_budget(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Two requests are past saving (3 ms left; int8 alone needs 6.7 ms at p90, the quantile a batch is
    judged at). Of the other 60 (50-60 ms left, 2 ms of margin), int8 runs 16 on each core in 40 ms, then
    2 more on each by 48.9 ms; the next 16 cannot end inside their margins any more, even alone, so they
    are set apart; with them gone the 2 after them fit (one on each core), and the last 6 are late again.
    The batch is int8's (the budget keeps ``fast`` out; with requests set apart the pool is overloaded,
    so fp32 is not weighed: its time would have saved some of them), and full: a shorter batch looks
    better to one decision, but taken at every one it cuts throughput."""
    queue = queued(loop, [57, 56.5, *(10 - k / 6 for k in range(60))])
    both = Pool((NOW, NOW), NARROW, NARROW)
    choice = decide(queue, both)
    assert choice.hopeless == (*queue[:2], *queue[38:54], *queue[56:])
    assert choice.variant is INT8 and choice.misses == 0 and not set(choice.items) & set(choice.hopeless)
    assert choice.items == tuple(queue[2 : 2 + len(choice.items)]) and len(choice.items) == RULES.max_rows
    kept = choose(queue, OPTIONS, both, predict, NOW, MS, lambda it: 2 * MS, [], set_apart=False)
    assert not kept.hopeless and kept.items[:2] == tuple(queue[:2])


def test_a_variant_beyond_the_budget_runs_only_when_the_budget_admits_it(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = queued(loop, [40 - k * 0.5 for k in range(30)])
    busy = Pool((NOW, NOW + 30 * MS), NARROW, NARROW)
    assert decide(queue, busy).variant is INT8
    admitted = Option("fast", RULES, 0.047, False, admitted=True)
    choice = choose(queue, [FP32, INT8, admitted], busy, predict, NOW, MS, lambda it: 2 * MS, [])
    assert choice.variant is admitted and choice.reason in (Reason.AGGRESSIVE, Reason.FASTEST)


def test_requests_without_deadlines_take_the_most_accurate_variant(loop: asyncio.AbstractEventLoop) -> None:
    queue = queued(loop, [5, 4], slo=0)
    for it in queue:
        it.deadline_ns = 0
    choice = decide(queue, Pool((NOW + 50 * MS, NOW + 50 * MS), WIDE, NARROW))
    assert choice.variant is FP32 and choice.reason is Reason.NO_SLO and choice.items == tuple(queue)


def test_a_batch_beyond_the_budget_takes_no_more_requests_than_the_budget_has_room_for(
    loop: asyncio.AbstractEventLoop,
) -> None:
    from gateway.core.selection.ledger import Ledger

    ledger = Ledger(window=100, mix_window_s=1.0)
    for _ in range(100):
        ledger.add("fp32", 0.0, 0)
    room = ledger.room(0.047, 0.004, 64)  # each request at 4.7 % moves the mean by about 0.047 %
    assert 1 <= room < 16 and ledger.admits(0.047, 0.004)
    queue = queued(loop, [40 - k * 0.5 for k in range(30)])
    busy = Pool((NOW, NOW + 30 * MS), NARROW, NARROW)
    admitted = Option("fast", RULES, 0.047, False, admitted=True, room=room)
    choice = choose(queue, [FP32, INT8, admitted], busy, predict, NOW, MS, lambda it: 2 * MS, [])
    assert choice.variant is admitted and len(choice.items) <= room


def test_when_no_batch_saves_everyone_it_may_be_split_over_the_free_slots(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Four requests with 11.2 ms left (9.2 ms inside the margin). On int8, all four in one batch end at
    14.3 ms (tail, overhead included): 4 late. Two of them end at 9.9 ms (2 late) while the other two run
    beside them on the second free slot, in time at their typical 7.7 ms; one alone is in time but the
    three beside it are not (3 late). With both slots free the half is a full batch's share and wins;
    with one free slot only a full batch is weighed. (Nothing is set apart: ``--slo-infeasible serve``.)"""
    queue = queued(loop, [48.8] * 4)

    def decide(pool: Pool) -> Choice:
        return choose(queue, OPTIONS, pool, predict, NOW, MS, lambda it: 2 * MS, [], set_apart=False)

    both = decide(Pool((NOW, NOW), NARROW, NARROW))
    assert both.variant is INT8 and both.items == tuple(queue[:2]) and both.misses == 2
    one = decide(Pool((NOW, NOW + 100 * MS), NARROW, NARROW))
    assert one.variant is INT8 and one.items == tuple(queue) and not one.feasible
