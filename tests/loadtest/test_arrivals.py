"""Each arrival process produces the intended rate and shape (statistical checks, fixed seeds)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from loadtest import arrivals


def _count_ok(observed: int, expected: float, sigmas: float = 4.0) -> bool:
    """A Poisson count within ``sigmas`` standard deviations of its mean."""
    return abs(observed - expected) <= sigmas * math.sqrt(expected)


def _ks_exponential(gaps: np.ndarray, rate: float) -> float:
    """Kolmogorov-Smirnov distance between the gaps and Exp(rate)."""
    x = np.sort(gaps)
    cdf = 1 - np.exp(-rate * x)
    n = len(x)
    return float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))


def test_constant_is_evenly_spaced_at_the_rate() -> None:
    t = arrivals.constant(50).arrivals(4.0)
    assert len(t) == 200
    assert t[0] == 0.0
    np.testing.assert_allclose(np.diff(t), 0.02, rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_poisson_has_the_rate_and_exponential_gaps(seed: int) -> None:
    rate, duration = 200.0, 20.0
    t = arrivals.poisson(rate).arrivals(duration, seed)
    assert _count_ok(len(t), rate * duration)
    gaps = np.diff(t)
    assert abs(gaps.mean() * rate - 1) < 0.05
    assert abs(gaps.std() / gaps.mean() - 1) < 0.05  # coefficient of variation 1: Poisson, not constant
    assert _ks_exponential(gaps, rate) < 1.63 / math.sqrt(len(gaps))  # KS test at the 1% level
    counts = np.histogram(t, bins=20, range=(0, duration))[0]  # homogeneous: the same rate throughout
    assert all(_count_ok(int(c), rate) for c in counts)


def test_poisson_is_reproducible_by_seed() -> None:
    a = arrivals.poisson(100).arrivals(2.0, seed=5)
    np.testing.assert_array_equal(a, arrivals.poisson(100).arrivals(2.0, seed=5))
    assert not np.array_equal(a[:50], arrivals.poisson(100).arrivals(2.0, seed=6)[:50])


def test_bursts_are_on_off_at_their_rates() -> None:
    base, burst, on, period, duration = 20.0, 400.0, 1.0, 4.0, 40.0
    t = arrivals.bursts(base, burst, on, period).arrivals(duration, seed=3)
    phase = np.mod(t, period)
    in_burst, between = t[phase < on], t[phase >= on]
    cycles = duration / period
    assert _count_ok(len(in_burst), burst * on * cycles)
    assert _count_ok(len(between), base * (period - on) * cycles)
    per_burst = np.histogram(t, bins=np.arange(0, duration + 1e-9, period))[0]  # every period has its burst
    assert per_burst.min() > 0.8 * burst * on


def test_bursts_with_nothing_between_are_silent_between() -> None:
    t = arrivals.bursts(0.0, 300.0, 0.5, 2.0).arrivals(10.0, seed=4)
    assert len(t) > 0
    assert np.all(np.mod(t, 2.0) < 0.5)


def test_step_changes_rate_at_the_step() -> None:
    t = arrivals.step(50.0, 250.0, 6.0).arrivals(12.0, seed=9)
    before, after = t[t < 6.0], t[t >= 6.0]
    assert _count_ok(len(before), 300) and _count_ok(len(after), 1500)
    assert np.all(np.diff(t) >= 0)


def test_bounds_cut_the_schedule() -> None:
    t = arrivals.poisson(1000).arrivals(5.0, seed=0, max_requests=123)
    assert len(t) == 123
    assert np.all(t < 5.0)
    sched = arrivals.schedule(arrivals.constant(10), 3.0, slo_ms=25)
    assert np.all(sched.slo_ms == 25)
    assert len(sched.limited(duration_s=1.0)) == 10 and len(sched.limited(max_requests=4)) == 4


def test_trace_replay_csv_with_slo(tmp_path: Path) -> None:
    f = tmp_path / "trace.csv"
    f.write_text("timestamp,slo_ms\n1700000000.5,40\n1700000000.0,\n1700000001.25,15\n")
    s = arrivals.read_trace(f)
    np.testing.assert_allclose(s.times_s, [0.0, 0.5, 1.25])
    assert math.isnan(s.slo_ms[0]) and list(s.slo_ms[1:]) == [40, 15]
    np.testing.assert_allclose(arrivals.read_trace(f, speed=2.0).times_s, [0.0, 0.25, 0.625])


def test_trace_replay_json_lines_and_bare_lines(tmp_path: Path) -> None:
    j = tmp_path / "trace.jsonl"
    j.write_text('{"t": 3.0, "slo_ms": 10}\n{"t": 2.0}\n# a comment\n{"t": 2.5, "slo_ms": 20}\n')
    s = arrivals.read_trace(j)
    np.testing.assert_allclose(s.times_s, [0.0, 0.5, 1.0])
    assert math.isnan(s.slo_ms[0]) and list(s.slo_ms[1:]) == [20, 10]
    b = tmp_path / "trace.txt"
    b.write_text("0.1\n0.3,7\n0.2\n")
    s = arrivals.read_trace(b)
    np.testing.assert_allclose(s.times_s, [0.0, 0.1, 0.2])
    assert list(np.nan_to_num(s.slo_ms)) == [0, 0, 7]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: arrivals.poisson(0), "rate must be"),
        (lambda: arrivals.constant(-1), "rate must be"),
        (lambda: arrivals.bursts(1, 10, on_s=5, period_s=5), "on-time"),
        (lambda: arrivals.step(1, 2, step_at_s=0), "step time"),
    ],
)
def test_bad_processes_are_refused_with_the_value(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_trace_without_timestamps_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("when,slo_ms\n1,2\n")
    with pytest.raises(ValueError, match="no 'timestamp'"):
        arrivals.read_trace(f)
