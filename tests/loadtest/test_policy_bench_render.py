"""The policy section's markdown and its two plots, from hand-made results: every part the section promises
is there, computed from the rows, and the plots are real PNG images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from loadtest import plots
from loadtest.benchmarks.policy_plan import OURS, Plan
from loadtest.benchmarks.policy_render import ATTAINMENT_PNG, MIX_PNG, render
from loadtest.benchmarks.policy_report import Calibration, Results
from loadtest.engine import GeneratorCpu, Run
from tests.loadtest.test_plots import _assert_png
from tests.loadtest.test_policy_bench import BASELINES, CAPACITY, run


def burst_run(seed: int = 0) -> Run:
    """A run through one burst: int8 then pruned-structured-int8 answer while it lasts, fp32 outside it."""
    rng = np.random.default_rng(seed)
    t = np.sort(np.concatenate([rng.uniform(0, 4, 80), rng.uniform(1, 2, 120)]))
    burst = (t >= 1) & (t < 2)
    variant = np.where(
        burst, np.where(rng.random(len(t)) < 0.5, "m.int8", "m.pruned-structured-int8"), "m.fp32"
    )
    error = np.where(burst & (rng.random(len(t)) < 0.05), "overloaded", "").astype(object)
    done = t + np.where(burst, 0.08, 0.03)
    done[error != ""] = t[error != ""] + 0.001
    return Run(
        "open",
        "bursts",
        t,
        t,
        done,
        error,
        np.where(error == "", variant, "").astype(object),
        np.full(len(t), 100.0),
        np.ones(len(t), np.int64),
        GeneratorCpu(4.0, 0.5, 0.1, 0.0, 0.0),
    )


def test_mix_over_time_and_attainment_plots(tmp_path: Path) -> None:
    _assert_png(plots.mix_over_time(burst_run(), tmp_path / "mix.png", bin_s=0.25))
    series = {
        "varigate": [(0.5, 1.0, 1.0, 1.0), (1.0, 0.999, 0.99, 1.0), (2.0, 0.995, 0.98, 1.0)],
        "static fp32": [(0.5, 1.0, 1.0, 1.0), (1.0, 0.6, 0.5, 0.7), (2.0, 0.0, 0.0, 0.01)],
        "nothing": [],
    }
    _assert_png(plots.attainment_vs_load(series, tmp_path / "att.png", target=0.995))
    failed = burst_run()
    failed = Run(
        failed.mode,
        "all refused",
        failed.scheduled_s,
        failed.sent_s,
        failed.done_s,
        np.full(len(failed.error), "overloaded", dtype=object),
        np.full(len(failed.error), "", dtype=object),
        failed.slo_ms,
        failed.rows,
        failed.cpu,
    )
    assert plots.mix_over_time(failed, tmp_path / "failed.png").stat().st_size > 0


def test_render_has_every_part_computed_from_the_rows(tmp_path: Path) -> None:
    plan = Plan()
    workloads = plan.workloads(CAPACITY["fp32"])
    results = Results(Calibration(50.0, 200, dict(CAPACITY), ("C(int8)",)), workloads)
    for rep in range(3):
        for w in workloads:
            results.outcomes.append(run(w.name, OURS, 1.0, {"fp32": 0.7, "int8": 0.3}, rep=rep))
            for p in BASELINES:
                mix = {"fp32": 1.0} if p == "INFaaS-style" else {p.removeprefix("static "): 1.0}
                results.outcomes.append(run(w.name, p, 0.9 + 0.01 * rep, mix, rep=rep, disturbed=rep == 2))
        results.burst_runs.append(burst_run(rep))
    results.settle_s.extend([0.2, 0.4, 0.6])
    losses = {"minilm.fp32": 0.0, "minilm.int8": 0.0086}
    notes = [
        "`--policy per-request --slo-infeasible shed` was refused by the gateway, so per-request is not run"
    ]
    state = {"dominated": [], "demoted": ["minilm.int8 x1"], "switches": []}
    text = render(
        results, plan, losses, notes, {"varigate": "`varigate serve`"}, state, "sentences", tmp_path
    )
    assert "SLO is 200 ms (4x)" in text and "fp32 40.0/s, int8 70.0/s" in text
    assert "calibration windows disturbed: C(int8)" in text
    assert f"{len(workloads) * len(BASELINES)} of {len(results.outcomes)} runs were disturbed" in text
    assert "| Poisson 1 C | static fp32 | 2 (+1 dropped) | 90.5% (90.0-91.0) |" in text
    assert "| Poisson 1 C | varigate | 3 | 100.0% | 0 / 1000 | 0.258% |" in text
    assert "Note: `--policy per-request" in text
    assert "- (a) **met**" in text and "- (d) **missed**" in text  # never a pruned-structured-int8 answer
    assert "per-minute CV" in text and "peak/mean" in text  # the trace each repetition replayed
    assert "demoted minilm.int8 x1" in text
    assert f"](plots/{ATTAINMENT_PNG})" in text and f"](plots/{MIX_PNG})" in text
    _assert_png(tmp_path / "plots" / ATTAINMENT_PNG)
    _assert_png(tmp_path / "plots" / MIX_PNG)
