"""The rows of the policy benchmark section (``policy.py`` measures them): one table row per load and
policy, and the issue's targets checked against them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.benchmarks.common import fmt, md_table
from loadtest.report import Summary

POLICIES = ("static fp32", "static int8", "INFaaS-style", "varigate")


@dataclass(frozen=True, slots=True)
class Calibration:
    p99_b1_ms: float
    slo_ms: int
    tight_slo_ms: int
    capacity_per_s: float
    steps: tuple[tuple[float, float, float], ...]  # probes: (rate/s, SLO attainment, p99 ms)


@dataclass(frozen=True, slots=True)
class Row:
    slo_ms: int
    load: str
    policy: str
    summary: Summary
    loss: float


TABLE_HEAD = (
    "SLO",
    "load",
    "policy",
    "SLO attainment",
    "goodput /s",
    "accuracy loss",
    "p50 ms",
    "p99 ms",
    "switches /min",
    "errors",
    "mix",
)


def table(rows: list[Row]) -> str:
    f = fmt
    table = []
    for r in rows:
        s = r.summary
        flag = "*" if s.steal_fraction > 0.05 or s.other_cores > 0.25 else ""
        table.append(
            [
                f"{r.slo_ms}",
                r.load + flag,
                r.policy,
                "-" if s.slo_attainment is None else f"{s.slo_attainment:.1%}",
                f(s.goodput_per_s),
                "-" if math.isnan(r.loss) else f"{r.loss:.3%}",
                f(s.latency_ms["p50"], ".0f"),
                f(s.latency_ms["p99"], ".0f"),
                f(s.variant_switches / max(s.span_s, 1e-9) * 60, ".0f"),
                str(sum(s.errors.values())) if s.errors else "0",
                _mix(s),
            ]
        )
    return md_table(TABLE_HEAD, table)


def _mix(s: Summary) -> str:
    total = sum(s.variants.values())
    return (
        ", ".join(f"{v.split('.', 1)[-1]} {k / total:.0%}" for v, k in sorted(s.variants.items()))
        if total
        else "-"
    )


def verdict(rows: list[Row]) -> list[str]:
    """The issue's targets, checked against what was measured (main SLO, loads up to 1.6 C and bursts)."""
    main = max(r.slo_ms for r in rows)
    target = [r for r in rows if r.slo_ms == main and not r.load.startswith("step")]
    ours = [r for r in target if r.policy == "varigate"]
    worst = min((r.summary.slo_attainment or 0.0 for r in ours), default=math.nan)
    loss = max((r.loss for r in ours if not math.isnan(r.loss)), default=math.nan)
    misses = {
        p: sum(
            r.summary.arrivals - round((r.summary.slo_attainment or 0) * r.summary.arrivals)
            for r in target
            if r.policy == p
        )
        for p in POLICIES
    }
    fewer = all(misses["varigate"] < misses[p] for p in POLICIES if p != "varigate")
    return [
        f"Targets at SLO {main} ms, Poisson up to 1.6 C and bursts: lowest varigate attainment {worst:.1%} "
        f"(target >= 99 %), highest varigate accuracy loss {loss:.3%} (target <= 1 %), misses per policy "
        + ", ".join(f"{p} {m}" for p, m in misses.items())
        + f" (fewer than every baseline: {'yes' if fewer else 'no'}).",
    ]
