"""Live accuracy of compressed variants: agreement with the fp32 reference on real traffic, and accuracy
against ground-truth labels when clients send them.

Agreement per row is top-1 equality for classifiers (card task ``classification``) and cosine similarity
for everything else (embedders). Each variant version keeps a sliding window of row agreements. Its gate is
the card's: an embedder's mean cosine must stay at or above ``1 - gate.max_relative_loss`` (the card's own
metric); a classifier's top-1 agreement at or above its card's measured agreement (``extra.top1_agreement``,
else ``1 - relative_loss``) minus ``gate.max_relative_loss`` (agreement is the proxy for accuracy when no
labels come). With at least ``min_samples`` rows, a variant whose *upper* confidence bound (Wilson for
top-1, normal for cosine) is below its gate is demoted: policies that ask leave it out. It recovers when its
*lower* bound is back at or above the gate. Drift = card value - live estimate.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.core.errors import InvalidInput
from gateway.core.selection.events import NullPolicyObserver, PolicyObserver
from varigate.contract.card import VariantCard

log = logging.getLogger(__name__)

CLASSIFICATION = "classification"
DEFAULT_GATE_LOSS = 0.01  # for a variant without a card


@dataclass(frozen=True, slots=True)
class DriftConfig:
    shadow_fraction: float = 0.05  # of requests whose answer is compared with another variant's
    window: int = 200  # row agreements kept per variant version
    min_samples: int = 30  # before a variant can be demoted or recover
    z: float = 1.96  # confidence bounds (1.96: 95 % two-sided)
    labels_kept: int = 100_000  # request ids remembered for ground-truth labels

    def __post_init__(self) -> None:
        if not 0 <= self.shadow_fraction <= 1 or self.window < 1 or self.min_samples < 1 or self.z <= 0:
            raise ValueError(f"invalid drift configuration {self}")


@dataclass(frozen=True, slots=True)
class VariantDrift:
    model: str
    variant: str
    version: str
    samples: int
    live: float
    lower: float
    upper: float
    expected: float
    gate: float
    demoted: bool

    @property
    def drift(self) -> float:
        return self.expected - self.live


@dataclass(slots=True)
class _Stats:
    model: str
    classifier: bool
    expected: float
    gate: float
    values: deque[float]
    demoted: bool = False


@dataclass(slots=True)
class _Labels:
    correct: int = 0
    total: int = 0


def is_classifier(card: VariantCard | None) -> bool:
    return card is not None and card.task == CLASSIFICATION


def expectation(card: VariantCard | None) -> tuple[float, float]:
    """(expected live agreement from the card, the gate it must stay above)."""
    if card is None:
        return 1.0, 1.0 - DEFAULT_GATE_LOSS
    loss, tolerance = card.accuracy.relative_loss, card.gate.max_relative_loss
    if is_classifier(card):
        expected = float(card.accuracy.extra.get("top1_agreement", 1.0 - loss))
        return expected, expected - tolerance
    return 1.0 - loss, 1.0 - tolerance


def agreement(classifier: bool, output: np.ndarray, reference: np.ndarray) -> list[float]:
    """Per-row agreement of a variant's output with the reference's (same shape)."""
    a = np.asarray(output, dtype=np.float64).reshape(len(output), -1)
    b = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if a.shape != b.shape:
        raise ValueError(f"outputs of shapes {a.shape} and {b.shape} cannot be compared")
    if classifier:
        return [float(x) for x in np.argmax(a, axis=1) == np.argmax(b, axis=1)]
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return [float(x) for x in (a * b).sum(axis=1) / norms]


def bounds(values: Sequence[float], classifier: bool, z: float) -> tuple[float, float, float]:
    """(mean, lower, upper): Wilson for 0/1 agreements, a normal interval for cosines."""
    n = len(values)
    if n == 0:
        return math.nan, -math.inf, math.inf
    mean = sum(values) / n
    if classifier:
        denom = 1 + z * z / n
        centre = (mean + z * z / (2 * n)) / denom
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / denom
        return mean, centre - half, centre + half
    sd = statistics.pstdev(values) if n > 1 else 0.0
    half = z * max(sd, 1e-6) / math.sqrt(n)
    return mean, mean - half, mean + half


class DriftMonitor:
    def __init__(self, config: DriftConfig | None = None, observer: PolicyObserver | None = None) -> None:
        self.config = config or DriftConfig()
        self.observer = observer or NullPolicyObserver()
        self._stats: dict[tuple[str, str, str], _Stats] = {}  # (logical, model, version)
        self._demoted: set[tuple[str, str]] = set()  # (model, version)
        self._served: OrderedDict[tuple[str, str], tuple[str, tuple[int, ...]]] = OrderedDict()
        self._labels: dict[tuple[str, str], _Labels] = {}

    def demoted(self, model: str, version: str) -> bool:
        return (model, version) in self._demoted

    def samples(self, logical: str, model: str, version: str) -> int:
        stats = self._stats.get((logical, model, version))
        return len(stats.values) if stats else 0

    def record(
        self, logical: str, model: str, version: str, card: VariantCard | None, rows: Sequence[float]
    ) -> None:
        """Row agreements of ``model`` (at ``version``) with the reference on the same inputs."""
        key = (logical, model, version)
        stats = self._stats.get(key)
        if stats is None:
            expected, gate = expectation(card)
            stats = _Stats(model, is_classifier(card), expected, gate, deque(maxlen=self.config.window))
            self._stats[key] = stats
        stats.values.extend(rows)
        snap = self._snapshot(key, stats)
        self.observer.drift(logical, model, snap.live, snap.samples, snap.drift)
        if snap.samples < self.config.min_samples:
            return
        if not stats.demoted and snap.upper < snap.gate:
            stats.demoted = True
            self._demoted.add((model, version))
            log.warning(
                "variant %s version %s demoted: live agreement %.4f (upper bound %.4f, %d rows) is below "
                "its gate %.4f (card %.4f)",
                model, version, snap.live, snap.upper, snap.samples, snap.gate, snap.expected,
            )  # fmt: skip
            self.observer.demotion(logical, model, True)
        elif stats.demoted and snap.lower >= snap.gate:
            stats.demoted = False
            self._demoted.discard((model, version))
            log.warning(
                "variant %s version %s recovered: live agreement %.4f (lower bound %.4f) meets its gate %.4f",
                model, version, snap.live, snap.lower, snap.gate,
            )  # fmt: skip
            self.observer.demotion(logical, model, False)

    def _snapshot(self, key: tuple[str, str, str], stats: _Stats) -> VariantDrift:
        mean, lower, upper = bounds(stats.values, stats.classifier, self.config.z)
        logical, model, version = key
        return VariantDrift(
            logical, model, version, len(stats.values), mean, lower, upper, stats.expected, stats.gate,
            stats.demoted,
        )  # fmt: skip

    # -- ground truth -----------------------------------------------------------------------------------

    def remember(self, logical: str, model: str, request_id: str, top1: Sequence[int]) -> None:
        """What ``model`` answered (top-1 per row) to the request ``request_id``, for labels later."""
        key = (logical, request_id)
        self._served[key] = (model, tuple(int(x) for x in top1))
        self._served.move_to_end(key)
        while len(self._served) > self.config.labels_kept:
            self._served.popitem(last=False)

    def label(self, logical: str, labels: Sequence[tuple[str, object]]) -> tuple[int, list[str]]:
        """Ground truth for earlier requests: ``(request id, class or one class per row)``. Returns how many
        requests it was accepted for and the ids that are unknown (never served with an id, or forgotten).
        Nothing is taken when any label is malformed (``InvalidInput``)."""
        found: list[tuple[tuple[str, str], str, list[int], tuple[int, ...]]] = []
        unknown: list[str] = []
        for request_id, label in labels:
            served = self._served.get((logical, request_id))
            if served is None:
                unknown.append(request_id)
                continue
            model, top1 = served
            given = label if isinstance(label, list) else [label]
            truth = [t for t in given if isinstance(t, int) and not isinstance(t, bool)]
            if len(truth) != len(given) or len(truth) != len(top1):
                raise InvalidInput(
                    f"label for request {request_id!r} of model {logical!r} must be {len(top1)} integer "
                    f"class(es), got {label!r}"
                )
            found.append(((logical, request_id), model, truth, top1))
        counts: dict[str, _Labels] = {}
        for key, model, truth, top1 in found:
            self._served.pop(key, None)
            c = counts.setdefault(model, _Labels())
            c.correct += sum(int(t == p) for t, p in zip(truth, top1, strict=True))
            c.total += len(top1)
        for model, c in sorted(counts.items()):
            total = self._labels.setdefault((logical, model), _Labels())
            total.correct += c.correct
            total.total += c.total
            self.observer.labelled(logical, model, total.correct, total.total)
        return len(found), unknown
