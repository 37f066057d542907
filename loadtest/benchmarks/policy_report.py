"""The rows of the policy section (``policy.py`` measures them): one ``Outcome`` per run, one ``Cell`` per
workload and policy over its repetitions (medians and min-max of the undisturbed runs), and the table.

Definitions. Every arrival counts: an answer later than the SLO, a refusal (429), a timeout or any other
error is a miss. Accuracy loss is the mean card relative loss of the variants that answered, per answer.
A run is disturbed when the hypervisor stole over 5 % of the CPU or other processes used over a quarter
of a core (``loadtest.cpu.Window.disturbed``, as the variant section); disturbed runs are dropped, and
when every repetition of a cell was disturbed all are kept and the row is flagged ``*``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from loadtest.benchmarks.common import md_table
from loadtest.benchmarks.policy_plan import Workload
from loadtest.engine import Run
from loadtest.report import Summary


@dataclass(frozen=True, slots=True)
class Calibration:
    p99_b1_ms: float
    slo_ms: int
    capacity: dict[str, float]  # requests/s per variant, saturated closed loop
    disturbed: tuple[str, ...] = ()  # the calibration windows that were disturbed

    @property
    def timeout_s(self) -> float:
        """A request unanswered after 5 SLOs (at least 1 s) is cancelled: it is a miss anyway."""
        return max(1.0, 5 * self.slo_ms / 1000)


@dataclass(slots=True)
class Results:
    calibration: Calibration
    workloads: list[Workload]
    outcomes: list[Outcome] = field(default_factory=list)
    burst_runs: list[Run] = field(default_factory=list)  # varigate's, one per repetition
    settle_s: list[float] = field(default_factory=list)  # the wait for quiet servers before each run


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run of one policy on one workload in one repetition."""

    workload: str
    policy: str
    rep: int
    arrivals: int
    attained: int  # answered within the SLO
    loss: float  # mean card loss of the answering variants; nan when nothing was answered
    goodput_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    variants: Mapping[str, int]  # answers per serving variant (model name)
    errors: Mapping[str, int]
    disturbed: bool = False

    @property
    def misses(self) -> int:
        return self.arrivals - self.attained

    @property
    def attainment(self) -> float:
        return self.attained / self.arrivals if self.arrivals else math.nan

    @property
    def answered(self) -> int:
        return sum(self.variants.values())


def outcome(
    workload: str, policy: str, rep: int, s: Summary, losses: Mapping[str, float], disturbed: bool
) -> Outcome:
    """The outcome of a run from its summary; ``losses``: card relative loss per model name."""
    attained = round((s.slo_attainment or 0.0) * s.arrivals)
    return Outcome(
        workload,
        policy,
        rep,
        s.arrivals,
        attained,
        mean_loss(s.variants, losses),
        s.goodput_per_s,
        s.latency_ms["p50"],
        s.latency_ms["p99"],
        dict(s.variants),
        dict(s.errors),
        disturbed,
    )


def mean_loss(variants: Mapping[str, int], losses: Mapping[str, float]) -> float:
    """Answer-weighted card loss; nan when nothing answered or a variant has no card loss."""
    answered = sum(variants.values())
    if not answered:
        return math.nan
    return sum(losses.get(v, math.nan) * k for v, k in variants.items()) / answered


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float

    @staticmethod
    def of(values: Iterable[float]) -> Spread:
        xs = [v for v in values if not math.isnan(v)]
        if not xs:
            return Spread(math.nan, math.nan, math.nan)
        return Spread(statistics.median(xs), min(xs), max(xs))

    def text(self, spec: str, scale: float = 1.0, unit: str = "") -> str:
        if math.isnan(self.median):
            return "-"
        m, lo, hi = (f"{v * scale:{spec}}" for v in (self.median, self.low, self.high))
        return f"{m}{unit}" if lo == hi else f"{m}{unit} ({lo}-{hi})"


@dataclass(frozen=True, slots=True)
class Cell:
    """A workload and policy over its repetitions: ``runs`` are the ones quoted."""

    workload: str
    policy: str
    runs: tuple[Outcome, ...]
    dropped: int
    flagged: bool  # every repetition was disturbed: medians of disturbed runs

    @property
    def attainment(self) -> Spread:
        return Spread.of(r.attainment for r in self.runs)

    @property
    def misses(self) -> Spread:
        return Spread.of(float(r.misses) for r in self.runs)

    @property
    def loss(self) -> float:
        """Median over the repetitions of each run's mean loss."""
        return Spread.of(r.loss for r in self.runs).median

    @property
    def mix(self) -> Counter[str]:
        return sum((Counter(r.variants) for r in self.runs), Counter())

    def share(self, variant: str) -> float:
        """The fraction of the answers that ``variant`` (a name's suffix after the dot) gave."""
        mix = self.mix
        total = sum(mix.values())
        hit = sum(k for v, k in mix.items() if v.split(".", 1)[-1] == variant)
        return hit / total if total else 0.0


def cells(outcomes: Iterable[Outcome]) -> dict[tuple[str, str], Cell]:
    """One cell per (workload, policy), in the order the outcomes first name them."""
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.workload, o.policy), []).append(o)
    out = {}
    for key, runs in groups.items():
        clean = [r for r in runs if not r.disturbed]
        kept = clean or runs
        out[key] = Cell(key[0], key[1], tuple(kept), len(runs) - len(kept), not clean)
    return out


TABLE_HEAD = (
    "workload",
    "policy",
    "runs",
    "SLO attainment",
    "misses / arrivals",
    "accuracy loss",
    "goodput /s",
    "p50 ms",
    "p99 ms",
    "mix",
    "errors",
)


def table(grid: Mapping[tuple[str, str], Cell], workloads: Sequence[str], policies: Sequence[str]) -> str:
    """Medians over the quoted repetitions, (min-max) where they differ; ``*``: every run disturbed."""
    rows = []
    for w in workloads:
        for p in policies:
            c = grid.get((w, p))
            if c is None:
                continue
            arrivals = Spread.of(float(r.arrivals) for r in c.runs)
            errors = sum((Counter(r.errors) for r in c.runs), Counter())
            rows.append(
                [
                    w + ("*" if c.flagged else ""),
                    p,
                    f"{len(c.runs)}" + (f" (+{c.dropped} dropped)" if c.dropped else ""),
                    c.attainment.text(".1f", 100, "%"),
                    f"{c.misses.text('.0f')} / {arrivals.text('.0f')}",
                    "-" if math.isnan(c.loss) else f"{c.loss:.3%}",
                    Spread.of(r.goodput_per_s for r in c.runs).text(".1f"),
                    _median([r.p50_ms for r in c.runs], ".0f"),
                    _median([r.p99_ms for r in c.runs], ".0f"),
                    mix_text(c.mix),
                    ", ".join(f"{k} {n}" for k, n in sorted(errors.items())) or "0",
                ]
            )
    return md_table(TABLE_HEAD, rows)


def mix_text(mix: Mapping[str, int]) -> str:
    total = sum(mix.values())
    if not total:
        return "-"
    return ", ".join(f"{v.split('.', 1)[-1]} {k / total:.0%}" for v, k in sorted(mix.items()))


def _median(values: Sequence[float | None], spec: str) -> str:
    xs = [v for v in values if v is not None]
    return f"{statistics.median(xs):{spec}}" if xs else "-"
