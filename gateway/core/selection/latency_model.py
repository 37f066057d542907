"""How long a batch of ``rows`` takes on a variant, learnt online from the batches that run.

The variant card's profile gives the shape (p99 per batch size, interpolated, at the card's sequence length;
a batch of another length scales it linearly); measured batches give a correction factor
``measured / profiled``, kept per variant and pool mode (``batching.pool``: a batch alone on every core runs
``wide``, one beside others ``narrow``; the learnt factor of each is its own) and per batch-size class (1, 2,
3-4, 5-8, ...) in a sliding window (by count and by age, so it follows the machine's load). Every batch is
also recorded under ``ANY`` (every mode together), for the per-request baselines that do not know how a batch
will run. The prediction is the profile times the window's p99 factor (its median for the typical time).
While a class has few samples the mode's whole window stands in; while the mode has few samples the factor
is the largest of those samples, of the last settled p99 factor and of the prior: conservative until there
is evidence. The prior is what the runner measured at load, in this process's layout
(``Runner.calibration``: the cards are profiled by the compressor on another process, maybe another
machine), else 1 (the profile itself). A variant without a profile uses 1 ms per row as its shape, so its
factor is simply learnt. Times are ``time.monotonic_ns()``, durations nanoseconds.
"""

from __future__ import annotations

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
        self._priors: dict[tuple[str, str], float] = {}

    def know(
        self,
        model: str,
        card: VariantCard | None,
        calibration: Mapping[str, Mapping[int, float]] | None = None,
    ) -> None:
        """Use ``card``'s profile as the shape of ``model``'s latency, and ``calibration`` (pool mode ->
        rows -> seconds at ``CALIBRATION_LENGTH``, measured at load) as each mode's prior factor."""
        self._cards[model] = card
        for mode, timed in (calibration or {}).items():
            ratios = sorted(
                s * 1e9 / self.profiled_ns(model, r, CALIBRATION_LENGTH) for r, s in timed.items()
            )
            if ratios:
                self._priors[(model, mode)] = ratios[len(ratios) // 2]

    def prior(self, model: str, mode: str = ANY) -> float:
        if mode == ANY:
            found = [f for (m, _), f in self._priors.items() if m == model]
            return max(found, default=1.0)
        return self._priors.get((model, mode), 1.0)

    def profiled_ns(self, model: str, rows: int, length: int = 0) -> float:
        card = self._cards.get(model)
        if card is not None and card.profile:
            base = card.latency_ms(max(1, rows), "p99_ms") * 1e6
            profiled = int(card.profile_conditions.get("seq_len", 0) or 0)
            return base * (length / profiled) if length > 0 and profiled > 0 else base
        return float(FALLBACK_NS_PER_ROW * max(1, rows))

    def factor(
        self, model: str, rows: int, now_ns: int, quantile: float | None = None, mode: str = ANY
    ) -> float:
        """measured / profiled at ``quantile`` (default: the model's, p99); ``0.5`` gives the typical one."""
        q = self._q if quantile is None else quantile
        v = self._variants.get((model, mode))
        prior = self.prior(model, mode)
        if v is None:
            return prior
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
        return max(prior, v.settled, worst)

    def predict_ns(
        self,
        model: str,
        rows: int,
        now_ns: int,
        quantile: float | None = None,
        mode: str = ANY,
        length: int = 0,
    ) -> int:
        return round(self.profiled_ns(model, rows, length) * self.factor(model, rows, now_ns, quantile, mode))

    def record(
        self, model: str, rows: int, measured_ns: int, now_ns: int, mode: str = ANY, length: int = 0
    ) -> None:
        ratio = measured_ns / self.profiled_ns(model, rows, length)
        for key in {(model, mode), (model, ANY)}:
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
        for key in [k for k in (*self._variants, *self._priors) if k[0] == model]:
            self._variants.pop(key, None)
            self._priors.pop(key, None)
        self._cards.pop(model, None)
