"""Live accuracy of compressed variants: agreement with the fp32 reference on real traffic, and accuracy
against ground-truth labels when clients send them.

One value per shadowed request (``record`` is called once per request; its rows are averaged first, so
the rows of one request count once): the mean cosine similarity of its rows for embedders, the fraction
of its rows whose top-1 agrees for classifiers (card task ``classification``). The gate is the card's: an
embedder's mean cosine must stay at or above ``1 - gate.max_relative_loss`` (the card's own metric); a
classifier's top-1 agreement at or above its card's measured agreement (``extra.top1_agreement``, else
``1 - relative_loss``) minus ``gate.max_relative_loss`` (agreement is the proxy for accuracy when no
labels come).

Demotion and recovery are decided by the anytime-valid sequential test of ``gateway.core.drift.sequential``
(a betting CUSUM e-detector), looked at after every request: a variant version is demoted (policies that
ask leave it out) when the evidence that its mean agreement fell below the gate reaches the threshold; it
then recovers when the evidence that the mean is back above the gate does. Each false verdict (a demotion
while every request's mean agreement is at or above the gate, a recovery while it stays below) has
probability at most ``alpha`` per ``horizon`` shadowed requests of that version; no window, no correction
for repeated looks needed. ``min_samples`` requests must be seen after each start or verdict before the
next verdict. The reported live agreement is the mean over the last ``window`` requests; drift = card
value - live.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.core.drift.sequential import Detector, Direction, log_threshold
from gateway.core.errors import InvalidInput
from gateway.core.selection.events import NullPolicyObserver, PolicyObserver
from varigate.contract.card import VariantCard

log = logging.getLogger(__name__)

CLASSIFICATION = "classification"
DEFAULT_GATE_LOSS = 0.01  # for a variant without a card


@dataclass(frozen=True, slots=True)
class DriftConfig:
    shadow_fraction: float = 0.05  # of answered requests, compared with another variant's answer
    shadow_max_share: float = 0.2  # of a logical model's recent compute (served + shadows) spent on shadows
    shadow_max_concurrent: int = 2  # shadows of one logical model running (or queued) at once
    window: int = 200  # shadowed requests in the reported live agreement
    min_samples: int = 10  # shadowed requests after a start or a verdict before the next verdict
    alpha: float = 1e-3  # false demotion (or recovery) probability per ``horizon`` shadowed requests
    horizon: int = 10_000  # shadowed requests of one variant version: ~1 h at 55 req/s, 5 % shadowed
    labels_kept: int = 100_000  # request ids remembered for ground-truth labels
    seed: int | None = None  # of the shadow sampling (None: from the OS)

    def __post_init__(self) -> None:
        if (
            not 0 <= self.shadow_fraction <= 1
            or not 0 < self.shadow_max_share <= 1
            or self.shadow_max_concurrent < 1
            or self.window < 1
            or self.min_samples < 1
            or not 0 < self.alpha < 1
            or self.horizon < 1
            or self.labels_kept < 0
        ):
            raise ValueError(f"invalid drift configuration {self}")


@dataclass(frozen=True, slots=True)
class VariantDrift:
    """One variant version's state: ``evidence`` (nats) of the test running now (demotion while not
    demoted, recovery while demoted), a verdict at ``threshold``."""

    model: str
    variant: str
    version: str
    samples: int
    live: float
    expected: float
    gate: float
    demoted: bool
    evidence: float
    threshold: float

    @property
    def drift(self) -> float:
        return self.expected - self.live


@dataclass(slots=True)
class _Stats:
    classifier: bool
    expected: float
    gate: float
    recent: deque[float]
    test: Detector  # Direction.BELOW while not demoted, ABOVE while demoted
    recent_sum: float = 0.0
    total: int = 0
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


def value_range(classifier: bool) -> tuple[float, float]:
    """The range of one request's agreement: a fraction of rows, or a mean cosine."""
    return (0.0, 1.0) if classifier else (-1.0, 1.0)


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


class DriftMonitor:
    def __init__(self, config: DriftConfig | None = None, observer: PolicyObserver | None = None) -> None:
        self.config = config or DriftConfig()
        self.observer = observer or NullPolicyObserver()
        self.threshold = log_threshold(self.config.alpha, self.config.horizon)
        self._stats: dict[tuple[str, str, str], _Stats] = {}  # (logical, model, version)
        self._demoted: set[tuple[str, str]] = set()  # (model, version)
        self._served: OrderedDict[tuple[str, str], tuple[str, tuple[int, ...]]] = OrderedDict()
        self._labels: dict[tuple[str, str], _Labels] = {}

    def demoted(self, model: str, version: str) -> bool:
        return (model, version) in self._demoted

    def samples(self, logical: str, model: str, version: str) -> int:
        """Shadowed requests recorded for ``model`` at ``version``."""
        stats = self._stats.get((logical, model, version))
        return stats.total if stats else 0

    def state(self, logical: str, model: str, version: str) -> VariantDrift | None:
        stats = self._stats.get((logical, model, version))
        return None if stats is None else self._snapshot((logical, model, version), stats)

    def record(
        self, logical: str, model: str, version: str, card: VariantCard | None, rows: Sequence[float]
    ) -> None:
        """The row agreements of ONE shadowed request of ``model`` (at ``version``) with the reference on
        the same inputs; they count as one value, their mean (NaN: no agreement, the range's low end)."""
        if not rows:
            raise ValueError(f"a shadowed request of {model!r} compared no rows")
        key = (logical, model, version)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._new(card)
            self._stats[key] = stats
        value = sum(rows) / len(rows)
        if math.isnan(value):  # a variant answering NaN agrees with nothing
            value = value_range(stats.classifier)[0]
        recent = stats.recent
        if len(recent) == recent.maxlen:
            stats.recent_sum -= recent[0]
        recent.append(value)
        stats.total += 1
        stats.recent_sum = stats.recent_sum + value if stats.total % len(recent) else sum(recent)  # no creep
        live = stats.recent_sum / len(recent)
        alarm = stats.test.update(value)
        self.observer.drift(logical, model, live, len(recent), stats.expected - live)
        if not alarm or stats.test.count < self.config.min_samples:
            return
        evidence = stats.test.evidence
        stats.demoted = not stats.demoted
        lo, hi = value_range(stats.classifier)
        direction = Direction.ABOVE if stats.demoted else Direction.BELOW
        stats.test = Detector(direction, stats.gate, lo, hi, self.threshold)
        if stats.demoted:
            self._demoted.add((model, version))
        else:
            self._demoted.discard((model, version))
        log.warning(
            "variant %s version %s %s: live agreement %.4f over the last %d shadowed requests (%d in all); "
            "evidence %.1f >= %.1f that its mean is %s its gate %.4f (card %.4f)",
            model, version, "demoted" if stats.demoted else "recovered", live, len(stats.recent),
            stats.total, evidence, self.threshold, "below" if stats.demoted else "above", stats.gate,
            stats.expected,
        )  # fmt: skip
        self.observer.demotion(logical, model, stats.demoted)

    def _new(self, card: VariantCard | None) -> _Stats:
        classifier = is_classifier(card)
        expected, gate = expectation(card)
        lo, hi = value_range(classifier)
        test = Detector(Direction.BELOW, gate, lo, hi, self.threshold)
        return _Stats(classifier, expected, gate, deque(maxlen=self.config.window), test)

    def _snapshot(self, key: tuple[str, str, str], stats: _Stats) -> VariantDrift:
        live = stats.recent_sum / len(stats.recent) if stats.recent else float("nan")
        logical, model, version = key
        return VariantDrift(
            logical, model, version, stats.total, live, stats.expected, stats.gate, stats.demoted,
            stats.test.evidence, self.threshold,
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


def bounds(values: Sequence[float], classifier: bool, z: float) -> tuple[float, float, float]:
    """(mean, lower, upper), Wilson for 0/1 values, normal otherwise: a fixed-sample interval, NOT the
    drift test (it is not valid under repeated looks). Kept only until tests/gateway/policy/
    test_policy_units.py stops importing it; nothing in the gateway uses it."""
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
