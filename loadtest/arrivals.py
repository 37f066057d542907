"""Arrival processes for open-loop load: every arrival time is fixed before the first request is sent.

All processes except trace replay are one mechanism: a piecewise-constant rate ``r(t)`` defines the
cumulative intensity ``L(t) = integral of r``; arrival ``k`` happens where ``L(t)`` reaches ``u_k``. With
``u_k = k`` the arrivals are evenly spaced at the current rate (constant load); with ``u_k`` a unit-rate
Poisson process they form a Poisson process of rate ``r(t)`` (the time-rescaling theorem), so bursts and
steps are exact non-homogeneous Poisson processes, not approximations.

- ``constant``: ``rate`` requests/s, evenly spaced.
- ``poisson``: Poisson arrivals at ``rate``.
- ``bursts``: on/off: ``burst_rate`` for ``on_s`` at the start of every ``period_s``, ``rate`` otherwise
  (0 = silent between bursts). Poisson within each phase.
- ``step``: ``rate`` until ``step_at_s``, then ``step_rate``. Poisson.
- ``trace``: replay timestamps from a file (see ``read_trace``), optionally with a per-request SLO.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

KINDS = ("constant", "poisson", "bursts", "step", "trace")


@dataclass(frozen=True, slots=True)
class Schedule:
    """Arrival offsets in seconds from the start (sorted), and per-request SLOs (``nan`` = none)."""

    times_s: np.ndarray
    slo_ms: np.ndarray
    description: str

    def __post_init__(self) -> None:
        if self.times_s.shape != self.slo_ms.shape:
            raise ValueError(f"{len(self.times_s)} arrival times but {len(self.slo_ms)} SLO values")
        if len(self.times_s) and (np.any(np.diff(self.times_s) < 0) or self.times_s[0] < 0):
            raise ValueError("arrival times must be non-negative and sorted")

    def __len__(self) -> int:
        return len(self.times_s)

    @property
    def span_s(self) -> float:
        return float(self.times_s[-1]) if len(self.times_s) else 0.0

    def limited(self, duration_s: float | None = None, max_requests: int | None = None) -> Schedule:
        """The arrivals before ``duration_s``, at most ``max_requests`` of them."""
        n = len(self.times_s)
        if duration_s is not None:
            n = int(np.searchsorted(self.times_s, duration_s, side="left"))
        if max_requests is not None:
            n = min(n, max_requests)
        return Schedule(self.times_s[:n], self.slo_ms[:n], self.description)


@dataclass(frozen=True, slots=True)
class Piecewise:
    """A rate that is ``rates[i]`` from ``starts_s[i]`` on (``starts_s[0] == 0``); ``period_s`` repeats it."""

    starts_s: tuple[float, ...]
    rates: tuple[float, ...]
    poisson: bool
    period_s: float | None = None

    def __post_init__(self) -> None:
        if not self.starts_s or self.starts_s[0] != 0 or len(self.starts_s) != len(self.rates):
            raise ValueError(f"segments must start at 0 and give one rate each, got {self.starts_s}")
        if any(b <= a for a, b in pairwise(self.starts_s)):
            raise ValueError(f"segment starts must increase, got {self.starts_s}")
        if any(r < 0 or not math.isfinite(r) for r in self.rates):
            raise ValueError(f"rates must be finite and >= 0 requests/s, got {self.rates}")
        if self.period_s is not None and self.period_s <= self.starts_s[-1]:
            raise ValueError(
                f"period_s {self.period_s} must exceed the last segment start {self.starts_s[-1]}"
            )

    def describe(self) -> str:
        kind = "Poisson" if self.poisson else "evenly spaced"
        if len(self.rates) == 1:
            return f"{kind} arrivals at {self.rates[0]:g}/s"
        phases = ", ".join(f"{r:g}/s from {s:g} s" for s, r in zip(self.starts_s, self.rates, strict=True))
        return f"{kind} arrivals: {phases}" + (
            f", repeating every {self.period_s:g} s" if self.period_s else ""
        )

    def arrivals(self, duration_s: float, seed: int = 0, max_requests: int | None = None) -> np.ndarray:
        """Arrival times in ``[0, duration_s)``, at most ``max_requests`` of them."""
        if duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        edges, rates = self._segments(duration_s)
        cum = np.concatenate([[0.0], np.cumsum(np.diff(edges) * rates)])  # L(t) at each edge
        total = cum[-1]
        if total <= 0:
            return np.zeros(0)
        if self.poisson:
            rng = np.random.default_rng(seed)
            n_draw = int(total + 6 * math.sqrt(total) + 16)
            u = np.cumsum(rng.exponential(1.0, n_draw))
            while u[-1] < total:  # practically never: extend the unit-rate process
                u = np.concatenate([u, u[-1] + np.cumsum(rng.exponential(1.0, n_draw))])
        else:
            u = np.arange(0.0, math.ceil(total) + 1)
        u = u[u < total]
        if max_requests is not None:
            u = u[:max_requests]
        # invert L: find the segment of each u, then interpolate linearly inside it
        seg = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, len(rates) - 1)
        times: np.ndarray = edges[seg] + (u - cum[seg]) / np.where(rates[seg] > 0, rates[seg], np.inf)
        clipped: np.ndarray = np.minimum(times, np.nextafter(duration_s, 0))
        return clipped

    def _segments(self, duration_s: float) -> tuple[np.ndarray, np.ndarray]:
        starts, rates = np.asarray(self.starts_s, float), np.asarray(self.rates, float)
        if self.period_s:
            reps = math.ceil(duration_s / self.period_s)
            starts = (starts[None, :] + self.period_s * np.arange(reps)[:, None]).ravel()
            rates = np.tile(rates, reps)
        keep = starts < duration_s
        starts, rates = starts[keep], rates[keep]
        return np.append(starts, duration_s), rates


def constant(rate: float) -> Piecewise:
    return Piecewise((0.0,), (_positive(rate, "rate"),), poisson=False)


def poisson(rate: float) -> Piecewise:
    return Piecewise((0.0,), (_positive(rate, "rate"),), poisson=True)


def bursts(rate: float, burst_rate: float, on_s: float, period_s: float) -> Piecewise:
    if not 0 < on_s < period_s:
        raise ValueError(f"burst on-time must be in (0, period {period_s}) s, got {on_s}")
    return Piecewise(
        (0.0, on_s), (_positive(burst_rate, "burst rate"), rate), poisson=True, period_s=period_s
    )


def step(rate: float, step_rate: float, step_at_s: float) -> Piecewise:
    if step_at_s <= 0:
        raise ValueError(f"step time must be > 0 s, got {step_at_s}")
    return Piecewise((0.0, step_at_s), (rate, step_rate), poisson=True)


def schedule(
    process: Piecewise,
    duration_s: float,
    *,
    seed: int = 0,
    max_requests: int | None = None,
    slo_ms: float | None = None,
    description: str = "",
) -> Schedule:
    times = process.arrivals(duration_s, seed, max_requests)
    slo = np.full(len(times), np.nan if slo_ms is None else float(slo_ms))
    return Schedule(times, slo, description or process.describe())


def read_trace(path: Path | str, speed: float = 1.0) -> Schedule:
    """A trace file: CSV with a header naming ``timestamp`` (or ``time_s`` / ``t``) and optionally
    ``slo_ms``; or JSON lines with the same keys; or bare lines ``<timestamp>[,<slo_ms>]``. Timestamps are
    seconds (absolute or relative; the first becomes 0) and need not be sorted; ``speed`` 2 replays twice
    as fast."""
    if speed <= 0:
        raise ValueError(f"trace speed must be > 0, got {speed}")
    path = Path(path)
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"trace {path} has no arrivals")
    rows: list[tuple[float, float]] = []
    if lines[0].lstrip().startswith("{"):
        for n, ln in enumerate(lines, 1):
            obj = json.loads(ln)
            rows.append((_field(obj, path, n), float(obj.get("slo_ms", math.nan))))
    elif any(c.isalpha() for c in lines[0].replace("e-", "").replace("e+", "")):
        for n, rec in enumerate(csv.DictReader(lines), 2):
            slo = rec.get("slo_ms") or ""
            rows.append((_field(rec, path, n), float(slo) if slo.strip() else math.nan))
    else:
        for fields in csv.reader(lines):
            rows.append(
                (float(fields[0]), float(fields[1]) if len(fields) > 1 and fields[1].strip() else math.nan)
            )
    data = np.array(sorted(rows), dtype=float).reshape(-1, 2)
    if not np.all(np.isfinite(data[:, 0])):
        raise ValueError(f"trace {path} has a timestamp that is not a number")
    times = (data[:, 0] - data[0, 0]) / speed
    return Schedule(times, data[:, 1], f"trace {path.name}" + (f" at {speed}x" if speed != 1 else ""))


def _field(obj: dict[str, object], path: Path, line: int) -> float:
    for key in ("timestamp", "time_s", "t"):
        if key in obj and obj[key] not in (None, ""):
            return float(str(obj[key]))
    raise ValueError(f"{path}:{line}: no 'timestamp', 'time_s' or 't' field in {obj}")


def _positive(value: float, what: str) -> float:
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number > 0 requests/s, got {value}")
    return float(value)
