"""The issue's targets for the policy section, computed from the cells (``policy_report``), each met, missed
or not tested, with the figures it was judged on:

(a) varigate's attainment >= 99.5 % on every load up to 2x C(fp32) (the Poisson loads and the step to
    2 C), under the 3x bursts and on the trace;
(b) at the Poisson loads up to 1x C(fp32), at least static int8's attainment with at most half its mean
    accuracy loss;
(c) strictly fewer misses than every baseline whose accuracy loss is equal or lower (misses: the sum over
    workloads of each cell's median; loss: answer-weighted over every quoted run);
(d) on every workload whose peak rate exceeds C(int8), attainment held (>= 99.5 %) by moving batches to
    pruned-structured-int8 (a share of the answers), with less accuracy loss than static
    pruned-structured-int8 on the same workload.
Medians over the repetitions are what is judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadtest.benchmarks.policy_plan import OURS, Workload
from loadtest.benchmarks.policy_report import Cell

ATTAINMENT_TARGET = 0.995
STATIC_INT8, PRUNED = "static int8", "pruned-structured-int8"
STATIC_PRUNED = f"static {PRUNED}"


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str  # "(a)" ...
    status: str  # "met" | "missed" | "not tested"
    detail: str


def verdicts(
    grid: Mapping[tuple[str, str], Cell], workloads: Sequence[Workload], capacity: Mapping[str, float]
) -> list[Verdict]:
    """``capacity``: C per variant (``fp32``, ``int8``, ...), requests/s."""
    return [
        _attainment(grid, workloads),
        _against_int8(grid, workloads),
        _misses(grid, workloads),
        _beyond_int8(grid, workloads, capacity),
    ]


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1%}"


def _attainment(grid: Mapping[tuple[str, str], Cell], workloads: Sequence[Workload]) -> Verdict:
    judged = [
        w
        for w in workloads
        if w.kind in ("bursts", "trace") or (w.kind in ("poisson", "step") and w.load <= 2)
    ]
    figures = [(w.name, grid[(w.name, OURS)].attainment.median) for w in judged if (w.name, OURS) in grid]
    if not figures:
        return Verdict("(a)", "not tested", "varigate ran none of these workloads")
    low = [f"{n} {_pct(a)}" for n, a in figures if not a >= ATTAINMENT_TARGET]
    detail = "; ".join(f"{n} {_pct(a)}" for n, a in figures)
    status = "missed" if low else "met"
    return Verdict(
        "(a)", status, f"varigate >= 99.5 % everywhere: {detail}" + (f" (below: {len(low)})" if low else "")
    )


def _against_int8(grid: Mapping[tuple[str, str], Cell], workloads: Sequence[Workload]) -> Verdict:
    judged = [w for w in workloads if w.kind == "poisson" and w.load <= 1]
    parts, ok, tested = [], True, False
    for w in judged:
        ours, int8 = grid.get((w.name, OURS)), grid.get((w.name, STATIC_INT8))
        if ours is None or int8 is None:
            continue
        tested = True
        a, b = ours.attainment.median, int8.attainment.median
        la, lb = ours.loss, int8.loss
        good = a >= b and la <= lb / 2
        ok &= good
        parts.append(
            f"{w.name}: attainment {_pct(a)} vs {_pct(b)}, loss {la:.3%} vs half of {lb:.3%}"
            f" ({'yes' if good else 'no'})"
        )
    if not tested:
        return Verdict("(b)", "not tested", "no Poisson load up to 1 C ran both varigate and static int8")
    return Verdict("(b)", "met" if ok else "missed", "; ".join(parts))


def totals(
    grid: Mapping[tuple[str, str], Cell], policy: str, workloads: Sequence[str]
) -> tuple[float, float]:
    """(misses summed over ``workloads`` of the cells' medians, answer-weighted loss over the quoted runs)."""
    misses, weighted, answered = 0.0, 0.0, 0
    for w in workloads:
        c = grid[(w, policy)]
        misses += c.misses.median
        for r in c.runs:
            if r.answered and not math.isnan(r.loss):
                weighted += r.loss * r.answered
                answered += r.answered
    return misses, (weighted / answered if answered else math.nan)


def _misses(grid: Mapping[tuple[str, str], Cell], workloads: Sequence[Workload]) -> Verdict:
    names = [w.name for w in workloads if (w.name, OURS) in grid]
    if not names:
        return Verdict("(c)", "not tested", "varigate ran no workload")
    ours, our_loss = totals(grid, OURS, names)
    baselines = sorted({p for (_, p) in grid if p != OURS})
    compared, others, beaten = [], [], True
    for p in baselines:
        if not all((w, p) in grid for w in names):
            others.append(f"{p} (not run on every workload)")
            continue
        m, loss = totals(grid, p, names)
        if math.isnan(loss):
            others.append(f"{p} (answered nothing)")
        elif loss <= our_loss + 1e-12:
            beaten &= ours < m
            compared.append(f"{p} {m:.0f} misses at loss {loss:.3%}")
        else:
            others.append(f"{p} {m:.0f} misses at loss {loss:.3%}")
    detail = (
        f"varigate {ours:.0f} misses at loss {our_loss:.3%}; baselines with equal or lower loss: "
        + ("; ".join(compared) or "none")
        + (" | higher loss, not compared: " + "; ".join(others) if others else "")
    )
    if not compared:
        return Verdict("(c)", "not tested", detail)
    return Verdict("(c)", "met" if beaten else "missed", detail)


def _beyond_int8(
    grid: Mapping[tuple[str, str], Cell], workloads: Sequence[Workload], capacity: Mapping[str, float]
) -> Verdict:
    c_int8 = capacity.get("int8", math.nan)
    if PRUNED not in capacity or math.isnan(c_int8):
        return Verdict("(d)", "not tested", "no pruned-structured-int8 or int8 variant was served")
    beyond = [w for w in workloads if w.peak_per_s > c_int8 and (w.name, OURS) in grid]
    if not beyond:
        return Verdict("(d)", "not tested", f"no workload's peak rate exceeds C(int8) = {c_int8:.1f}/s")
    parts, ok = [], True
    for w in beyond:
        ours, pruned = grid[(w.name, OURS)], grid.get((w.name, STATIC_PRUNED))
        att, share = ours.attainment.median, ours.share(PRUNED)
        their = pruned.loss if pruned is not None else math.nan
        good = att >= ATTAINMENT_TARGET and share > 0 and ours.loss < their
        ok &= good
        parts.append(
            f"{w.name} (peak {w.peak_per_s:.0f}/s): attainment {_pct(att)}, {share:.0%} of answers by "
            f"{PRUNED}, loss {ours.loss:.3%} vs static {their:.3%} ({'yes' if good else 'no'})"
        )
    return Verdict("(d)", "met" if ok else "missed", f"C(int8) {c_int8:.1f}/s; " + "; ".join(parts))


def render(found: Sequence[Verdict]) -> list[str]:
    return [f"- {v.target} **{v.status}**: {v.detail}" for v in found]
