"""The production-shaped trace generator: each statistic its docstring names, measured on generated traces,
and each check shown to separate the shape from a flat Poisson process."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadtest import trace
from loadtest.trace import TraceShape

FLAT = {"peak_to_trough": 1.0, "minute_cv": 0.0, "burst_probability": 0.0}


def _stats(shape: TraceShape, seed: int = 0) -> trace.TraceStats:
    times = trace.generate(shape, seed).schedule().times_s
    return trace.stats(times, shape.minute_s, shape.duration_s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_rate_is_the_one_asked_for(seed: int) -> None:
    shape = TraceShape(mean_rate=30.0, duration_s=200.0)
    t = trace.generate(shape, seed)
    widths = np.diff(np.append(t.process.starts_s, shape.duration_s))
    assert float((t.rates * widths).sum()) / shape.duration_s == pytest.approx(30.0, rel=1e-9)
    expected = 30.0 * 200.0
    n = len(t.schedule())
    assert abs(n - expected) < 4 * math.sqrt(expected), n  # Poisson around the scaled rate
    assert t.peak_per_s > 30.0


def test_per_minute_cv_is_minute_cv_beyond_counting_noise() -> None:
    def excess_cv(cv: float) -> float:
        shape = TraceShape(mean_rate=400.0, duration_s=1000.0, **{**FLAT, "minute_cv": cv})
        s = _stats(shape)
        per_minute = s.mean_per_s * shape.minute_s
        return math.sqrt(max(0.0, s.minute_cv**2 - 1 / per_minute))  # Poisson's own 1/sqrt(mean) removed

    assert excess_cv(0.3) == pytest.approx(0.3, abs=0.03)
    assert excess_cv(0.6) == pytest.approx(0.6, abs=0.06)
    assert excess_cv(0.0) < 0.03


@pytest.mark.parametrize("ratio", [1.0, 3.0])
def test_diurnal_peak_to_trough(ratio: float) -> None:
    shape = TraceShape(mean_rate=200.0, duration_s=960.0, **{**FLAT, "peak_to_trough": ratio})
    times = trace.generate(shape, 3).schedule().times_s
    counts = np.histogram(times, np.linspace(0, 960.0, 25))[0]  # the day in 24 "hours"
    assert counts.max() / counts.min() == pytest.approx(ratio, rel=0.1)
    if ratio > 1:
        assert np.argmin(counts) in (0, 23) and np.argmax(counts) in (11, 12)  # trough at 0, peak mid-day


@pytest.mark.parametrize("alpha", [1.5, 2.5])
def test_burst_sizes_have_the_pareto_tail_index(alpha: float) -> None:
    shape = TraceShape(mean_rate=10.0, duration_s=5000.0, burst_probability=0.5, burst_alpha=alpha)
    sizes = trace.generate(shape, 4).burst_sizes
    assert 9000 < len(sizes) < 11000  # one burst every other minute of 20000
    assert sizes.min() >= shape.burst_min
    assert trace.hill_tail_index(sizes) == pytest.approx(alpha, rel=0.1)


def test_bursts_raise_the_rate_of_the_minutes_they_start() -> None:
    shape = TraceShape(mean_rate=100.0, duration_s=500.0, minute_cv=0.0, peak_to_trough=1.0)
    t = trace.generate(shape, 5)
    begins = t.rates > t.rates.min() * (1 + shape.burst_min) * 0.999
    assert begins.sum() >= len(t.burst_sizes)  # every burst start lifts its minute by at least burst_min


def test_defaults_are_bursty_and_flat_poisson_is_not() -> None:
    bursty = [_stats(TraceShape(mean_rate=400.0, duration_s=600.0), seed) for seed in range(3)]
    flat = [_stats(TraceShape(mean_rate=400.0, duration_s=600.0, **FLAT), seed) for seed in range(3)]
    for b, f in zip(bursty, flat, strict=True):
        assert b.iat_cv > 1.1
        assert f.iat_cv == pytest.approx(1.0, abs=0.03)
        assert b.peak_to_mean > 2.0
        assert f.peak_to_mean < 1.6
        assert b.minute_cv > 3 * f.minute_cv


def test_the_benchmark_scale_trace_has_the_shape() -> None:
    """The size the policy benchmark replays: 12 s, minutes of 0.25 s, tens of arrivals a second."""
    shape = TraceShape(mean_rate=28.0, duration_s=12.0)
    for seed in range(3):
        t = trace.generate(shape, seed)
        s = trace.stats(t.schedule().times_s, shape.minute_s, shape.duration_s)
        assert s.peak_to_mean > 1.8
        assert t.peak_per_s > 1.5 * shape.mean_rate
        assert abs(s.mean_per_s - 28.0) < 4 * math.sqrt(28.0 / 12.0)


def test_same_seed_same_trace_other_seed_another() -> None:
    shape = TraceShape(mean_rate=50.0, duration_s=20.0)
    a, b, c = (trace.generate(shape, s).schedule().times_s for s in (7, 7, 8))
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    assert np.all(np.diff(a) >= 0) and a[0] >= 0 and a[-1] < 20.0


def test_stats_of_evenly_spaced_arrivals() -> None:
    s = trace.stats(np.arange(0.0, 10.0, 0.1), 1.0, 10.0)
    assert s.mean_per_s == pytest.approx(10.0)
    assert s.iat_cv == pytest.approx(0.0, abs=1e-9)
    assert s.minute_cv == pytest.approx(0.0, abs=1e-9)
    assert s.peak_to_mean == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mean_rate": 0.0}, "mean_rate"),
        ({"minute_s": -1.0}, "minute_s"),
        ({"peak_to_trough": 0.5}, "peak_to_trough"),
        ({"burst_decay": 1.0}, "burst_decay"),
        ({"minute_cv": -0.1}, "minute_cv"),
    ],
)
def test_bad_shapes_are_refused_by_name(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TraceShape(**{"mean_rate": 10.0, "duration_s": 5.0, **options})


def test_hill_needs_enough_samples() -> None:
    with pytest.raises(ValueError, match="Hill"):
        trace.hill_tail_index(np.array([1.0, 2.0]))
