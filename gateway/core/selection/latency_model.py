"""How long a batch of ``rows`` takes on a variant, learnt online from the batches that run.

The shape (time per batch size, interpolated) is what the runner measured at load in this process's
layout, per pool mode (``Runner.calibration``: the variant's sessions timed at batch sizes 1, 2, 4, ... up
to its largest preferred size, at ``CALIBRATION_LENGTH`` tokens): a card is profiled by the compressor in
another process, maybe on another machine or a busy one. Without a calibration the card's p99 profile is
the shape (at the card's sequence length). A batch of another length scales the shape linearly. Measured
batches give a correction factor ``measured / shape``, kept per variant and pool mode (``batching.pool``:
a batch alone on every core runs ``wide``, one beside others ``narrow``) and per batch-size class (1, 2,
3-4, 5-8, ...) in a sliding window (by count and by age, so it follows the machine's load). Every batch is
also recorded under ``ANY`` (every mode together, shaped by the slowest mode), for the per-request
baselines that do not know how a batch will run. The prediction is the shape times the window's p99
factor (its median for the typical time). While a class has few samples the mode's whole window stands in;
while the mode has few samples the factor is the largest of those samples, of the last settled p99 factor
(kept however long the variant was idle) and of 1: conservative until there is evidence. A variant with
neither uses 1 ms per row as its shape, so its factor is simply learnt. Times are
``time.monotonic_ns()``, durations nanoseconds.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from varigate.contract.card import VariantCard

FALLBACK_NS_PER_ROW = 1_000_000
ANY = ""  # every pool mode together
CALIBRATION_LENGTH = 64  # the sequence length runners time variable-length inputs at (``warmup``)
NEVER = -(2**62)  # a time point before any


class Window:
    """The values of the last ``size`` samples no older than ``max_age_ns``; quantiles cached until the
    window changes."""

    def __init__(self, size: int, max_age_ns: int) -> None:
        if size < 1 or max_age_ns <= 0:
            raise ValueError(f"window size must be >= 1 and max_age_ns > 0, got {size}, {max_age_ns}")
        self._samples: deque[tuple[int, float]] = deque(maxlen=size)
        self._max_age_ns = max_age_ns
        self._sorted: list[float] | None = None

    def add(self, now_ns: int, value: float) -> None:
        self._samples.append((now_ns, value))
        self._sorted = None

    def prune(self, now_ns: int) -> None:
        while self._samples and now_ns - self._samples[0][0] > self._max_age_ns:
            self._samples.popleft()
            self._sorted = None

    def __len__(self) -> int:
        return len(self._samples)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (nearest rank) of the values; ``nan`` when empty."""
        if self._sorted is None:
            self._sorted = sorted(v for _, v in self._samples)
        if not self._sorted:
            return math.nan
        return self._sorted[min(len(self._sorted) - 1, max(0, math.ceil(q * len(self._sorted)) - 1))]


def size_class(rows: int) -> int:
    """1 -> 0, 2 -> 1, 3-4 -> 2, 5-8 -> 3, ..."""
    return max(0, math.ceil(math.log2(max(1, rows))))


@dataclass(slots=True)
class _Variant:
    overall: Window
    classes: dict[int, Window] = field(default_factory=dict)
    settled: float = 0.0  # the last factor computed from enough samples (0: never)


class LatencyModel:
    def __init__(
        self,
        *,
        window: int = 256,
        min_samples: int = 16,
        max_age_ns: int = 15 * 10**9,
        quantile: float = 0.99,
    ) -> None:
        if min_samples < 1 or not 0 < quantile <= 1:
            raise ValueError(f"min_samples must be >= 1 and 0 < quantile <= 1, got {min_samples}, {quantile}")
        self._size, self._min, self._age, self._q = window, min_samples, max_age_ns, quantile
        self._variants: dict[tuple[str, str], _Variant] = {}
        self._cards: dict[str, VariantCard | None] = {}
        self._timed: dict[tuple[str, str], list[tuple[int, float]]] = {}  # measured at load, per mode

    def know(
        self,
        model: str,
        card: VariantCard | None,
        calibration: Mapping[str, Mapping[int, float]] | None = None,
    ) -> None:
        """The shape of ``model``'s latency: ``calibration`` where the runner measured one at load (pool mode
        -> rows -> seconds at ``CALIBRATION_LENGTH``), else ``card``'s profile."""
        self._cards[model] = card
        for mode, timed in (calibration or {}).items():
            if timed:
                self._timed[(model, mode)] = sorted((r, t * 1e9) for r, t in timed.items())

    def profiled_ns(self, model: str, rows: int, length: int = 0, mode: str = ANY) -> float:
        """The shape at ``rows`` and sequence ``length`` (0: the length it was measured at)."""
        timed = self._timed_for(model, mode)
        if timed:
            return _interpolate(timed, max(1, rows)) * (length / CALIBRATION_LENGTH if length > 0 else 1.0)
        card = self._cards.get(model)
        if card is not None and card.profile:
            base = card.latency_ms(max(1, rows), "p99_ms") * 1e6
            profiled = int(card.profile_conditions.get("seq_len", 0) or 0)
            return base * (length / profiled) if length > 0 and profiled > 0 else base
        return float(FALLBACK_NS_PER_ROW * max(1, rows))

    def _timed_for(self, model: str, mode: str) -> list[tuple[int, float]] | None:
        if mode != ANY:
            return self._timed.get((model, mode))
        found = [t for (m, _), t in self._timed.items() if m == model]
        if not found:
            return None
        return [(r, max(t[i][1] for t in found)) for i, (r, _) in enumerate(found[0])]  # the slowest mode

    def factor(
        self, model: str, rows: int, now_ns: int, quantile: float | None = None, mode: str = ANY
    ) -> float:
        """measured / profiled at ``quantile`` (default: the model's, p99); ``0.5`` gives the typical one."""
        q = self._q if quantile is None else quantile
        v = self._variants.get((model, mode))
        if v is None:
            return 1.0
        v.overall.prune(now_ns)
        enough = len(v.overall) >= self._min
        if enough:
            v.settled = v.overall.quantile(self._q)
        cls = v.classes.get(size_class(rows))
        if cls is not None:
            cls.prune(now_ns)
            if len(cls) >= self._min:
                return cls.quantile(q)
        if enough:
            return v.overall.quantile(q)
        worst = v.overall.quantile(1.0) if len(v.overall) else 0.0
        return max(1.0, v.settled, worst)

    def predict_ns(
        self,
        model: str,
        rows: int,
        now_ns: int,
        quantile: float | None = None,
        mode: str = ANY,
        length: int = 0,
    ) -> int:
        shape = self.profiled_ns(model, rows, length, mode)
        return round(shape * self.factor(model, rows, now_ns, quantile, mode))

    def record(
        self, model: str, rows: int, measured_ns: int, now_ns: int, mode: str = ANY, length: int = 0
    ) -> None:
        for key in {(model, mode), (model, ANY)}:
            ratio = measured_ns / self.profiled_ns(model, rows, length, key[1])
            v = self._variants.get(key)
            if v is None:
                v = self._variants[key] = _Variant(Window(self._size, self._age))
            v.overall.add(now_ns, ratio)
            cls = v.classes.get(size_class(rows))
            if cls is None:
                cls = v.classes[size_class(rows)] = Window(self._size, self._age)
            cls.add(now_ns, ratio)

    def forget(self, model: str) -> None:
        """Drop what was learnt about ``model`` (it was reloaded: new files, new speed)."""
        for key in [k for k in (*self._variants, *self._timed) if k[0] == model]:
            self._variants.pop(key, None)
            self._timed.pop(key, None)
        self._cards.pop(model, None)


def _interpolate(points: list[tuple[int, float]], rows: int) -> float:
    """Piecewise linear in rows through ``(rows, ns)`` points (sorted), extended past the last along the
    last segment (proportionally from a single point), never below the first."""
    if rows <= points[0][0] or len(points) == 1:
        r0, t0 = points[0]
        return t0 if rows <= r0 else t0 * rows / r0
    for (r0, t0), (r1, t1) in itertools.pairwise(points):
        if rows <= r1:
            return t0 + (t1 - t0) * (rows - r0) / (r1 - r0)
    (r0, t0), (r1, t1) = points[-2], points[-1]
    return t1 + max(0.0, (t1 - t0) / (r1 - r0)) * (rows - r1)
