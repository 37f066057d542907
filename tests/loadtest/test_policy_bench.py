"""The policy section's rows, table and targets on hand-made outcomes: medians and spreads, disturbed runs
dropped or flagged, each target computed and seen both met and missed (and not tested)."""

from __future__ import annotations

import math

import pytest

from loadtest.benchmarks.policy_plan import OURS, QUICK_SCALE, Plan, Workload, order, targets
from loadtest.benchmarks.policy_report import Cell, Outcome, Spread, cells, mean_loss, table
from loadtest.benchmarks.policy_targets import Verdict, totals, verdicts

C = 40.0  # C(fp32), requests/s
CAPACITY = {"fp32": C, "int8": 70.0, "pruned-structured-int8": 110.0}
LOSS = {"fp32": 0.0, "int8": 0.0086, "pruned-structured-int8": 0.03}
WORKLOADS = Plan().workloads(C)
BASELINES = ("static fp32", "static int8", "static pruned-structured-int8", "INFaaS-style")


def run(
    workload: str,
    policy: str,
    attainment: float,
    mix: dict[str, float],
    rep: int = 0,
    arrivals: int = 1000,
    disturbed: bool = False,
) -> Outcome:
    """An outcome with ``attainment`` of ``arrivals`` and answers split as ``mix`` (variant: fraction)."""
    answered = {f"minilm.{v}": round(f * arrivals) for v, f in mix.items() if f}
    loss = mean_loss(answered, {f"minilm.{v}": x for v, x in LOSS.items()})
    return Outcome(
        workload,
        policy,
        rep,
        arrivals,
        round(attainment * arrivals),
        loss,
        30.0,
        20.0,
        80.0,
        answered,
        {},
        disturbed,
    )


def grid_of(
    ours: dict[str, tuple[float, dict[str, float]]], base: dict[str, float]
) -> dict[tuple[str, str], Cell]:
    """varigate per workload as given (attainment, mix); each static baseline at ``base[policy]`` on every
    workload; INFaaS-style at 97 % with a half fp32, half int8 mix."""
    out = []
    for w in WORKLOADS:
        att, mix = ours.get(w.name, (1.0, {"fp32": 0.8, "int8": 0.2}))
        out.append(run(w.name, OURS, att, mix))
        for p in BASELINES[:3]:
            out.append(run(w.name, p, base[p], {p.removeprefix("static "): 1.0}))
        out.append(run(w.name, "INFaaS-style", 0.97, {"fp32": 0.5, "int8": 0.5}))
    return cells(out)


def by_target(found: list[Verdict]) -> dict[str, Verdict]:
    return {v.target: v for v in found}


GOOD_BASE = {"static fp32": 0.6, "static int8": 0.98, "static pruned-structured-int8": 0.99}
BEYOND = [w.name for w in WORKLOADS if w.peak_per_s > CAPACITY["int8"]]


def test_plan_workloads_and_rotation() -> None:
    names = [w.name for w in WORKLOADS]
    assert names[:4] == ["Poisson 0.5 C", "Poisson 1 C", "Poisson 1.5 C", "Poisson 2 C"]
    assert [w.kind for w in WORKLOADS] == ["poisson"] * 4 + ["bursts", "step", "trace"]
    burst = WORKLOADS[4]
    assert burst.peak_per_s == pytest.approx(3 * C) and 0.5 < burst.load < 3
    assert WORKLOADS[5].peak_per_s == pytest.approx(2 * C)
    t = WORKLOADS[6]
    assert len(t.processes) == 3 and t.processes[0] != t.processes[1]  # a new day per repetition
    assert BEYOND == ["Poisson 2 C", burst.name, WORKLOADS[5].name] + ([t.name] if t.peak_per_s > 70 else [])
    a, b, c = (t.schedule(r).times_s for r in (0, 0, 1))
    assert list(a) == list(b) and list(a) != list(c)
    quick = Plan.quick(["poisson"]).workloads(C)
    assert [w.kind for w in quick] == ["poisson"] * 4 and quick[0].seconds == pytest.approx(QUICK_SCALE * 4.0)
    policies = list(targets("minilm"))
    assert policies[0] == OURS and "per-request" in policies and "Triton int8" in policies
    orders = [order(policies, r, 3) for r in range(3)]
    assert all(sorted(o) == sorted(policies) for o in orders)
    assert len({o[0] for o in orders}) == 3  # a different policy runs first in each repetition


def test_cells_drop_disturbed_runs_and_flag_all_disturbed() -> None:
    w = "Poisson 1 C"
    grid = cells(
        [
            run(w, OURS, 0.99, {"fp32": 1.0}, rep=0),
            run(w, OURS, 1.00, {"fp32": 1.0}, rep=1),
            run(w, OURS, 0.10, {"fp32": 1.0}, rep=2, disturbed=True),
            run(w, "static fp32", 0.5, {"fp32": 1.0}, rep=0, disturbed=True),
            run(w, "static fp32", 0.7, {"fp32": 1.0}, rep=1, disturbed=True),
        ]
    )
    ours, fp32 = grid[(w, OURS)], grid[(w, "static fp32")]
    assert (len(ours.runs), ours.dropped, ours.flagged) == (2, 1, False)
    assert ours.attainment == Spread(0.995, 0.99, 1.0)
    assert ours.misses == Spread(5.0, 0.0, 10.0)
    assert (len(fp32.runs), fp32.dropped, fp32.flagged) == (2, 0, True)
    text = table(grid, [w], [OURS, "static fp32"])
    assert "| Poisson 1 C | varigate | 2 (+1 dropped) | 99.5% (99.0-100.0) | 5 (0-10) / 1000 |" in text
    assert "| Poisson 1 C* | static fp32 | 2 | 60.0% (50.0-70.0) |" in text


def test_loss_and_share_are_per_answer() -> None:
    o = run("Poisson 1 C", OURS, 1.0, {"fp32": 0.5, "int8": 0.25, "pruned-structured-int8": 0.25})
    assert o.loss == pytest.approx(0.25 * 0.0086 + 0.25 * 0.03)
    cell = cells([o])[("Poisson 1 C", OURS)]
    assert cell.share("pruned-structured-int8") == pytest.approx(0.25)
    assert cell.share("fp16") == 0.0
    assert math.isnan(mean_loss({}, {}))
    assert math.isnan(mean_loss({"minilm.unknown": 3}, {}))  # a variant without a card loss is not guessed


def test_every_target_met() -> None:
    ours = {name: (1.0, {"fp32": 0.6, "int8": 0.3, "pruned-structured-int8": 0.1}) for name in BEYOND}
    ours |= {
        "Poisson 0.5 C": (1.0, {"fp32": 0.9, "int8": 0.1}),
        "Poisson 1 C": (1.0, {"fp32": 0.6, "int8": 0.4}),
    }
    found = by_target(verdicts(grid_of(ours, GOOD_BASE), WORKLOADS, CAPACITY))
    assert [found[t].status for t in ("(a)", "(b)", "(c)", "(d)")] == ["met"] * 4, found
    assert "Poisson 2 C 100.0%" in found["(a)"].detail
    assert "static fp32" in found["(c)"].detail.split("|")[0]  # fp32's loss (0) is lower: compared
    assert "static int8" in found["(c)"].detail.split("|")[1]  # int8's loss is higher: not compared


def test_every_target_missed() -> None:
    ours = {
        "Poisson 2 C": (0.99, {"fp32": 0.5, "int8": 0.5}),  # (a) below 99.5 %; (d) no pruned share
        "Poisson 0.5 C": (1.0, {"int8": 1.0}),  # (b) int8's whole loss, not half of it
    }
    base = {**GOOD_BASE, "static fp32": 1.0}  # fp32 (loss 0) misses nothing: (c) cannot be beaten
    found = by_target(verdicts(grid_of(ours, base), WORKLOADS, CAPACITY))
    assert [found[t].status for t in ("(a)", "(b)", "(c)", "(d)")] == ["missed"] * 4, found
    assert "Poisson 2 C 99.0%" in found["(a)"].detail and "(below: 1)" in found["(a)"].detail
    assert (
        "Poisson 0.5 C: attainment 100.0% vs 98.0%, loss 0.860% vs half of 0.860% (no)" in found["(b)"].detail
    )
    assert "Poisson 2 C (peak 80/s): attainment 99.0%, 0% of answers" in found["(d)"].detail


def test_b_needs_at_least_int8s_attainment() -> None:
    ours = {"Poisson 1 C": (0.97, {"fp32": 1.0})}  # no loss, but below int8's 98 %
    found = by_target(verdicts(grid_of(ours, GOOD_BASE), WORKLOADS, CAPACITY))
    assert found["(b)"].status == "missed"
    assert (
        "Poisson 0.5 C: attainment 100.0% vs 98.0%, loss 0.172% vs half of 0.860% (yes)"
        in found["(b)"].detail
    )


def test_c_counts_misses_summed_over_workloads_and_compares_only_lower_loss() -> None:
    grid = grid_of({}, {**GOOD_BASE, "static int8": 1.0})  # int8 misses nothing but loses more accuracy
    names = [w.name for w in WORKLOADS]
    misses, loss = totals(grid, OURS, names)
    assert misses == 0.0 and loss == pytest.approx(0.2 * 0.0086)
    assert totals(grid, "static fp32", names) == (7 * 400.0, 0.0)
    found = by_target(verdicts(grid, WORKLOADS, CAPACITY))
    assert found["(c)"].status == "met"
    assert "static int8 0 misses at loss 0.860%" in found["(c)"].detail.split("|")[1]


def test_targets_not_tested_without_the_variants_or_the_load() -> None:
    grid = grid_of({}, GOOD_BASE)
    no_pruned = verdicts(grid, WORKLOADS, {"fp32": C, "int8": 70.0})
    assert by_target(no_pruned)["(d)"].status == "not tested"
    fast_int8 = by_target(verdicts(grid, WORKLOADS, {**CAPACITY, "int8": 1e6}))
    assert fast_int8["(d)"] == Verdict(
        "(d)", "not tested", "no workload's peak rate exceeds C(int8) = 1000000.0/s"
    )
    no_int8 = {k: c for k, c in grid.items() if k[1] != "static int8"}
    assert by_target(verdicts(no_int8, WORKLOADS, CAPACITY))["(b)"].status == "not tested"
    only: list[Workload] = [w for w in WORKLOADS if w.kind == "trace"]
    assert by_target(verdicts(grid, only, CAPACITY))["(b)"].status == "not tested"
