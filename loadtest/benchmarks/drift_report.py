"""Markdown for the ``drift`` section (``loadtest.benchmarks.drift``): the stream's shape, false demotions
without drift, detection delays after a fault, recovery, and the targets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gateway.core.drift.monitor import DriftConfig
from gateway.core.drift.sequential import BETS, TOP_BET
from loadtest.benchmarks.common import md_table

DETECT_WITHIN = 200


@dataclass(frozen=True, slots=True)
class Facts:
    source: str
    expected: float  # the card's mean cosine
    gate: float
    spread: float
    fit: tuple[float, float, float, float]  # the model's p05, p01 cosine; the card's p05, p01
    config: DriftConfig
    threshold: float
    hour: int  # shadowed requests per hour
    rate: tuple[int, float]  # requests/s, shadowed fraction
    after: int
    recovery_limit: int
    recovery_theory: float
    seconds: float


def _delay_row(label: tuple[str, str], ds: list[int], after: int) -> list[str]:
    real = [d for d in ds if 0 < d <= after]
    false, missed = sum(d == 0 for d in ds), sum(d > after for d in ds)
    pct = np.percentile(real, [50, 95]) if real else [math.nan, math.nan]
    within = sum(0 < d <= DETECT_WITHIN for d in ds)
    return [
        *label,
        str(len(ds)),
        f"{pct[0]:.0f}",
        f"{pct[1]:.0f}",
        str(max(real)) if real else "-",
        f"{within}/{len(ds)}",
        str(false),
        str(missed),
    ]


def render(
    head: str,
    f: Facts,
    null: dict[str, tuple[int, int]],
    faults: dict[tuple[str, str], list[int]],
    recovered: list[int],
) -> str:
    c = f.config
    rate, fraction = f.rate
    p05, p01, card05, card01 = f.fit
    lines = [
        "## Drift detection on simulated shadow traffic (issue 13)",
        "",
        head,
        "",
        f"Stream: {f.source}; mean cosine {f.expected:.5f}, gate {f.gate:.4f} (margin "
        f"{f.expected - f.gate:.5f}); per row 1 - cosine log-normal, log-sd {f.spread:.3f} (p05 cosine "
        f"{p05:.4f} against the card's {card05:.4f}, p01 {p01:.4f} against {card01:.4f}); one row per "
        f"request. Traffic: {rate} requests/s, {fraction:.0%} shadowed = {f.hour:,} shadowed requests an "
        "hour.",
        "",
        f"Test: betting CUSUM e-detector (`gateway/core/drift/sequential.py`), {BETS} bet sizes, alpha "
        f"{c.alpha:g} per horizon of {c.horizon:,} shadowed requests: threshold {f.threshold:.1f} nats; "
        f"min_samples {c.min_samples}. Bound: P(false demotion within m requests) <= alpha * m / horizon "
        f"= {c.alpha * f.hour / c.horizon:.1e} per hour, for any per-request distribution whose mean is at "
        "or above the gate.",
        "",
        "### False demotions without drift",
        "",
        md_table(
            [
                "stream",
                "simulated hours",
                "shadowed requests",
                "false demotions",
                "per hour",
                "bound per hour",
            ],
            [
                [
                    name,
                    str(hours),
                    f"{hours * f.hour:,}",
                    str(count),
                    f"{count / hours:.3g}",
                    f"{c.alpha * f.hour / c.horizon:.1e}",
                ]
                for name, (hours, count) in null.items()
            ],
        ),
        "",
        "### Detection delay after a fault (shadowed requests from the fault to the demotion)",
        "",
        md_table(
            [
                "drop of the mean",
                "fault",
                "seeds",
                "median",
                "p95",
                "max",
                f"<= {DETECT_WITHIN}",
                "demoted before the fault",
                f"missed (> {f.after})",
            ],
            [_delay_row(label, ds, f.after) for label, ds in faults.items()],
        ),
        "",
        "The fault starts at a uniformly random request of the hour; every drop here takes the mean below "
        "the gate (the card's margin is thin).",
        "",
        "### Recovery",
        "",
        _recovery(f, recovered),
        "",
        "### Targets",
        "",
        *_targets(f, null, faults),
        "",
    ]
    return "\n".join(lines)


def _recovery(f: Facts, recovered: list[int]) -> str:
    done = sorted(r for r in recovered if r <= f.recovery_limit)
    got = (
        f"recovered after {', '.join(f'{r:,}' for r in done)} shadowed requests"
        if done
        else f"none recovered within {f.recovery_limit:,} shadowed requests"
    )
    return (
        f"A demoted variant back at the card's distribution, {len(recovered)} seeds: {got}. Recovery needs "
        "evidence that the mean is above the gate with the same validity, and no bounded test can bet more "
        f"than {TOP_BET:g} / (gate + 1) on a rise (a cosine may be as low as -1): with the card's margin of "
        f"{f.expected - f.gate:.5f} that is about {f.recovery_theory:,.0f} shadowed requests "
        f"({f.recovery_theory / f.hour:.1f} hours of probes at this rate). A variant that recovers must be "
        "clearly above its gate; otherwise a new version (a reload) starts a fresh test."
    )


def _targets(
    f: Facts, null: dict[str, tuple[int, int]], faults: dict[tuple[str, str], list[int]]
) -> list[str]:
    no_drift = sum(count for _, count in null.values())
    two = [d for (drop, _), ds in faults.items() if drop == "2 points" for d in ds]
    real = [d for d in two if d > 0]
    worst = max(real) if real else f.after + 1
    p95 = float(np.percentile(real, 95)) if real else math.inf
    verdict = "met" if no_drift == 0 else "**missed**"
    detect = "met" if p95 <= DETECT_WITHIN and all(0 < d for d in two) else "**missed**"
    return [
        f"- No false demotion in an hour of traffic without drift: {no_drift} in "
        f"{sum(h for h, _ in null.values())} simulated hours: {verdict}",
        f"- A 2-point drop demoted within {DETECT_WITHIN} shadowed requests: p95 {p95:.0f}, max {worst} over "
        f"{len(two)} seeds: {detect}",
    ]
