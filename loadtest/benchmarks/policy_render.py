"""The policy section's markdown and plots: how it ran, the calibration, the trace it replayed, the table
(``policy_report``), the targets (``policy_targets``), attainment against load and varigate's mix through a
burst (PNG under ``docs/plots``)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from loadtest import plots, trace
from loadtest.benchmarks import common, policy_plan
from loadtest.benchmarks.policy_plan import Plan
from loadtest.benchmarks.policy_report import Cell, Results, cells, table
from loadtest.benchmarks.policy_targets import ATTAINMENT_TARGET, verdicts
from loadtest.benchmarks.policy_targets import render as render_targets
from loadtest.engine import Run

COMMAND = "python -m loadtest.benchmarks --only policy"
ATTAINMENT_PNG, MIX_PNG = "policy_attainment.png", "policy_burst_mix.png"


def render(
    results: Results,
    plan: Plan,
    losses: Mapping[str, float],
    notes: Sequence[str],
    servers: Mapping[str, str],
    state: Mapping[str, list[str]],
    payload: str,
    docs: Path,
    logical: str = "minilm",
) -> str:
    grid = cells(results.outcomes)
    workloads = [w.name for w in results.workloads]
    policies = list(dict.fromkeys(o.policy for o in results.outcomes))
    figures = _plots(grid, results, policies, docs / "plots")
    lines = _intro(results, plan, losses, notes, servers, f"{logical} over gRPC, {payload}")
    lines += [table(grid, workloads, policies), ""]
    lines += ["Targets, computed from the rows above (medians over the repetitions):", ""]
    lines += render_targets(verdicts(grid, results.workloads, results.calibration.capacity))
    lines += [""]
    lines += [f"![{name}](plots/{path.name})" for name, path in figures.items()]
    lines += ["", _state(state), ""]
    return "\n".join(lines)


def _intro(
    results: Results,
    plan: Plan,
    losses: Mapping[str, float],
    notes: Sequence[str],
    servers: Mapping[str, str],
    payload: str,
) -> list[str]:
    cal = results.calibration
    runs = len(results.outcomes)
    disturbed = sum(o.disturbed for o in results.outcomes)
    settle = statistics.median(results.settle_s) if results.settle_s else 0.0
    quick = " (quick smoke: one repetition at reduced lengths, not a result)" if plan.scale != 1.0 else ""
    return [
        "## Variant selection under load: late binding against the baselines (issue 13)",
        "",
        (
            f"`{COMMAND}` ({common.today()}){quick}; {payload}. {plan.repetitions} "
            f"repetition{'s' if plan.repetitions != 1 else ''} of every workload; in each, the "
            "policies run back to back on the same arrivals, their order rotated between "
            f"repetitions, after the servers' CPU fell quiet (median wait {settle:.1f} s). Every "
            "arrival counts: late answers, refusals and timeouts are misses. Cells quote the median "
            f"over the repetitions and (min-max) where they differ; {disturbed} of {runs} runs were "
            "disturbed (steal over 5 % or other processes over a quarter of a core) and are dropped, "
            "except in a cell whose every run was disturbed: those are kept and the cell marked *."
        ),
        "",
        "Servers: " + "; ".join(f"{name}: {d}" for name, d in servers.items()) + ".",
        "",
        (
            f"Calibration: fp32 batch-1 p99 {cal.p99_b1_ms:.1f} ms (closed loop, concurrency 1), so the "
            f"SLO is {cal.slo_ms} ms ({policy_plan.SLO_MULTIPLE}x). C from a saturated closed loop "
            f"(concurrency {policy_plan.CAPACITY_CONCURRENCY}) on each pinned variant: "
            + ", ".join(f"{v} {c:.1f}/s" for v, c in cal.capacity.items())
            + ". Loads are multiples of C(fp32)"
            + (f"; calibration windows disturbed: {', '.join(cal.disturbed)}" if cal.disturbed else "")
            + "."
        ),
        "",
        _lengths(plan),
        "",
        _trace_line(results, plan),
        "",
        "Card losses: " + ", ".join(f"{m} {v:.3%}" for m, v in losses.items()) + ".",
        "",
        *([*(f"Note: {n}" for n in notes), ""] if notes else []),
    ]


def _lengths(plan: Plan) -> str:
    k = plan.scale
    return (
        f"Run lengths: Poisson {policy_plan.POISSON_S * k:g} s per load, bursts "
        f"{policy_plan.BURST_S * k:g} s, step {policy_plan.STEP_S * k:g} s, trace "
        f"{policy_plan.TRACE_S * k:g} s; a request unanswered after 5 SLOs (at least 1 s) is cancelled."
    )


def _trace_line(results: Results, plan: Plan) -> str:
    """The statistics (``loadtest.trace.stats``) of the arrivals each repetition replayed."""
    c = results.calibration.capacity["fp32"]
    replayed = [w for w in results.workloads if w.kind == "trace"]
    if not replayed:
        return "No trace was replayed."
    parts = []
    for rep in range(plan.repetitions):
        day, times = plan.trace(c, rep), replayed[0].schedule(rep).times_s
        if len(times) < 3:
            parts.append(f"rep {rep + 1}: {len(times)} arrivals, too few for statistics")
            continue
        s = trace.stats(times, day.shape.minute_s, day.shape.duration_s)
        parts.append(
            f"rep {rep + 1}: {s.mean_per_s:.1f}/s, per-minute CV {s.minute_cv:.2f}, peak/mean "
            f"{s.peak_to_mean:.1f}, inter-arrival CV {s.iat_cv:.2f}, peak rate {day.peak_per_s:.0f}/s"
        )
    shape = plan.trace(c, 0).shape
    return (
        f"Trace (`loadtest.trace`, the Azure Functions 2019 trace's published shape, generated): one "
        f"compressed day, trace minutes of {shape.minute_s:g} s, mean {policy_plan.TRACE_LOAD:g} C; "
        + "; ".join(parts)
        + "."
    )


def _plots(
    grid: Mapping[tuple[str, str], Cell], results: Results, policies: Sequence[str], out: Path
) -> dict[str, Path]:
    figures: dict[str, Path] = {}
    poisson = [w for w in results.workloads if w.kind == "poisson"]
    series = {
        p: [
            (w.load, c.attainment.median, c.attainment.low, c.attainment.high)
            for w in poisson
            if (c := grid.get((w.name, p))) is not None
        ]
        for p in policies
    }
    if poisson:
        figures["SLO attainment against Poisson load, per policy"] = plots.attainment_vs_load(
            series,
            out / ATTAINMENT_PNG,
            target=ATTAINMENT_TARGET,
            title=f"SLO attainment against Poisson load (median, min-max of {results_reps(results)} runs)",
            xlabel="offered load (x C(fp32))",
        )
    run = _median_run(results.burst_runs)
    if run is not None:
        figures["varigate's variant mix through the bursts"] = plots.mix_over_time(
            run, out / MIX_PNG, title=f"varigate through the bursts ({run.description})", bin_s=0.25
        )
    return figures


def results_reps(results: Results) -> int:
    return len({o.rep for o in results.outcomes}) or 1


def _median_run(runs: Sequence[Run]) -> Run | None:
    """The repetition whose attainment is the median one (the plot shows a typical run, not the best)."""
    if not runs:
        return None

    def attained(r: Run) -> float:
        ok = r.ok & ~((r.done_s - r.scheduled_s) * 1000 > r.slo_ms)
        return float(ok.mean()) if len(ok) else math.nan

    ranked = sorted(runs, key=attained)
    return ranked[(len(ranked) - 1) // 2]


def _state(state: Mapping[str, list[str]]) -> str:
    return (
        "varigate gateway at the end of the run: dominated (left out) "
        + (", ".join(state.get("dominated", [])) or "none")
        + "; demoted "
        + (", ".join(state.get("demoted", [])) or "none")
        + "; ceiling switches "
        + ("; ".join(state.get("switches", [])) or "none")
        + "."
    )
