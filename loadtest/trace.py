"""A production-shaped arrival trace, generated with a seed: the published shape of the Azure Functions 2019
trace, which cannot be downloaded here.

That trace (Shahrad et al., "Serverless in the Wild", USENIX ATC 2020; Azure/AzurePublicDataset) counts
invocations per function per minute over 14 days. What its paper shows, and this generator reproduces:
a diurnal cycle in the rate; counts that vary from minute to minute around it; bursts whose sizes are
heavy-tailed; arrivals far burstier than Poisson (inter-arrival coefficient of variation above 1). The
defaults below are this project's choices, made to have that shape; they are not fitted to the trace.

The rate of trace minute ``m`` (constant within it) is ``D(t_m) * L_m * (1 + E_m)``, scaled so that its
time-weighted mean is ``mean_rate`` exactly:

- ``D``: diurnal, a sinusoid from trough to peak and back over ``day_s`` (one compressed day; by default
  the whole run), peak / trough = ``peak_to_trough``;
- ``L_m``: per-minute variation, independent lognormal factors of mean 1 and coefficient of variation
  ``minute_cv``;
- ``E_m``: bursts: each minute starts one with probability ``burst_probability``; its size (extra rate, as
  a multiple of the minute's) is Pareto with tail index ``burst_alpha`` and minimum ``burst_min``, and
  decays by ``burst_decay`` per following minute.

Time is compressed on two scales, to fit a run of seconds: a trace minute lasts ``minute_s``, a day
``day_s``. Arrivals within a minute are Poisson (``loadtest.arrivals.Piecewise``, exact).

The statistics it matches, each checked on generated traces by ``tests/loadtest/test_trace.py``
(``stats`` measures them on any arrival times):

- mean rate: ``mean_rate`` (the rate series is scaled to it; arrivals are Poisson around it);
- per-minute rate CV: ``minute_cv`` with diurnal and bursts off (beyond Poisson counting noise);
- diurnal peak / trough of the smoothed rate: ``peak_to_trough``;
- burst sizes: a Pareto tail of index ``burst_alpha`` (Hill estimator, ``hill_tail_index``);
- burstiness: inter-arrival CV above 1 with the defaults (1 for a flat Poisson process), and the
  per-minute peak-to-mean ratio that ``stats`` reports (above 2 with the defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loadtest.arrivals import Piecewise, Schedule, schedule


@dataclass(frozen=True, slots=True)
class TraceShape:
    """The trace's parameters; rates in arrivals per second of the (compressed) run."""

    mean_rate: float
    duration_s: float
    minute_s: float = 0.25  # one trace minute, compressed
    day_s: float | None = None  # one diurnal cycle, compressed; None = the whole run
    peak_to_trough: float = 2.0
    minute_cv: float = 0.3
    burst_probability: float = 0.06  # per trace minute
    burst_alpha: float = 1.8  # Pareto tail index of burst sizes
    burst_min: float = 0.5  # the smallest burst adds half the minute's rate
    burst_decay: float = 0.5  # a burst's extra rate, multiplied per following minute

    def __post_init__(self) -> None:
        for name in ("mean_rate", "duration_s", "minute_s", "burst_alpha", "burst_min"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"trace {name} must be a finite number > 0, got {value}")
        if self.day_s is not None and not self.day_s > 0:
            raise ValueError(f"trace day_s must be > 0 s, got {self.day_s}")
        if not self.peak_to_trough >= 1:
            raise ValueError(f"trace peak_to_trough must be >= 1, got {self.peak_to_trough}")
        if not self.minute_cv >= 0:
            raise ValueError(f"trace minute_cv must be >= 0, got {self.minute_cv}")
        if not 0 <= self.burst_probability <= 1 or not 0 <= self.burst_decay < 1:
            raise ValueError(
                f"trace burst_probability {self.burst_probability} must be in [0, 1] and burst_decay "
                f"{self.burst_decay} in [0, 1)"
            )


@dataclass(frozen=True, slots=True)
class Trace:
    """A generated trace: the rate of each compressed minute, the burst sizes drawn, the process."""

    shape: TraceShape
    rates: np.ndarray  # arrivals/s in each trace minute
    burst_sizes: np.ndarray  # the Pareto draws, in the order the bursts started
    process: Piecewise
    seed: int

    @property
    def peak_per_s(self) -> float:
        return float(self.rates.max())

    def describe(self) -> str:
        s = self.shape
        return (
            f"production-shaped trace (seed {self.seed}): mean {s.mean_rate:g}/s, minute = {s.minute_s:g} s, "
            f"day = {s.day_s or s.duration_s:g} s, peak/trough {s.peak_to_trough:g}, per-minute CV "
            f"{s.minute_cv:g}, bursts p={s.burst_probability:g}/min Pareto alpha {s.burst_alpha:g}"
        )

    def schedule(self, slo_ms: float | None = None) -> Schedule:
        """The arrivals (Poisson within each minute), seeded by the trace's seed."""
        return schedule(
            self.process, self.shape.duration_s, seed=self.seed, slo_ms=slo_ms, description=self.describe()
        )


def generate(shape: TraceShape, seed: int = 0) -> Trace:
    """The trace ``shape`` describes; the same seed gives the same rates and arrivals."""
    rng = np.random.default_rng([seed, 0x7ACE])
    n = math.ceil(shape.duration_s / shape.minute_s)
    starts = np.arange(n) * shape.minute_s
    widths = np.minimum(starts + shape.minute_s, shape.duration_s) - starts
    day = shape.day_s or shape.duration_s
    a = (shape.peak_to_trough - 1) / (shape.peak_to_trough + 1)
    diurnal = 1 - a * np.cos(2 * np.pi * (starts + widths / 2) / day)  # trough at 0, peak at day / 2
    sigma = math.sqrt(math.log1p(shape.minute_cv**2))
    level = rng.lognormal(-(sigma**2) / 2, sigma, n)  # mean 1, CV minute_cv
    started = rng.random(n) < shape.burst_probability
    sizes = shape.burst_min * (1 - rng.random(int(started.sum()))) ** (-1 / shape.burst_alpha)
    new = np.zeros(n)
    new[started] = sizes
    excess, carried = np.zeros(n), 0.0
    for m in range(n):  # a burst's extra rate decays geometrically: excess[m] = decay * excess[m-1] + new[m]
        carried = carried * shape.burst_decay + new[m]
        excess[m] = carried
    rates = diurnal * level * (1 + excess)
    rates *= shape.mean_rate * widths.sum() / float((rates * widths).sum())
    process = Piecewise(tuple(float(s) for s in starts), tuple(float(r) for r in rates), poisson=True)
    return Trace(shape, rates, sizes, process, seed)


@dataclass(frozen=True, slots=True)
class TraceStats:
    """What ``stats`` measures on arrival times."""

    mean_per_s: float
    minute_cv: float  # coefficient of variation of the per-minute counts
    peak_to_mean: float  # the busiest minute's count / the mean count per minute
    iat_cv: float  # coefficient of variation of the inter-arrival times (1 for Poisson)


def stats(times_s: np.ndarray, minute_s: float, duration_s: float) -> TraceStats:
    """The trace statistics of arrival times in ``[0, duration_s)``, counted per ``minute_s``."""
    times = np.sort(np.asarray(times_s, float))
    if len(times) < 3:
        raise ValueError(f"trace statistics need at least 3 arrivals, got {len(times)}")
    edges = np.arange(0.0, duration_s + minute_s / 2, minute_s)
    counts = np.histogram(times, edges)[0].astype(float)
    gaps = np.diff(times)
    return TraceStats(
        mean_per_s=len(times) / duration_s,
        minute_cv=float(counts.std() / counts.mean()),
        peak_to_mean=float(counts.max() / counts.mean()),
        iat_cv=float(gaps.std() / gaps.mean()),
    )


def hill_tail_index(samples: np.ndarray, k: int | None = None) -> float:
    """The Hill estimate of a Pareto tail index from the ``k`` largest samples (default: a fifth)."""
    x = np.sort(np.asarray(samples, float))[::-1]
    k = k or len(x) // 5
    if not 2 <= k < len(x) or x[k] <= 0:
        raise ValueError(f"the Hill estimator needs 2 <= k < {len(x)} positive samples, got k={k}")
    return float(k / np.log(x[:k] / x[k]).sum())
