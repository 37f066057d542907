"""The drift test on seeded, simulated per-request agreement: the false-demotion bound with no drift (at the
worst null, a mean exactly at the gate), a 2-point drop found within 200 requests, recovery only once the
mean is back above the gate, and one value per request however many rows it has."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest

from gateway.core.drift.monitor import DriftConfig, DriftMonitor, expectation
from gateway.core.drift.sequential import BETS, Detector, Direction, log_threshold
from tests.fixtures.tinyrepo import tiny_card
from varigate.contract.card import Gate, VariantCard

# MiniLM int8's shipped card: mean cosine 0.99056 (relative loss 0.944 %), gate 1 - 1 % = 0.99.
MINILM = dataclasses.replace(
    tiny_card("m.int8", "int8", 0.009441),
    gate=Gate(max_relative_loss=0.01, passed=True, reason="relative loss 0.94% <= 1%"),
)
EXPECTED, GATE = expectation(MINILM)
SPREAD = 0.337  # log-sd of 1 - cosine: the card's p05 cosine 0.9845 for its mean 0.9906
Stream = Callable[[np.random.Generator, int], np.ndarray]


def minilm(mean: float = EXPECTED) -> Stream:
    """Per-request cosines shaped like MiniLM int8's: 1 - cosine log-normal, with the given mean cosine."""
    loss = 1.0 - mean
    return lambda rng, n: 1.0 - loss * np.exp(SPREAD * rng.standard_normal(n) - SPREAD**2 / 2)


def two_point(mean: float, low: float = 0.9) -> Stream:
    """Requests that agree fully (1.0) or poorly (``low``), in the proportion that gives ``mean``."""
    p = (mean - low) / (1.0 - low)
    return lambda rng, n: np.where(rng.random(n) < p, 1.0, low)


def first_verdict(
    monitor: DriftMonitor, card: VariantCard, values: np.ndarray, name: str = "m.int8", rows: int = 1
) -> int:
    """Requests recorded (each ``rows`` rows of one value) until the variant's state flips (-1: never)."""
    before = monitor.demoted(name, "1")
    for i, v in enumerate(values.tolist()):
        monitor.record("m", name, "1", card, [v] * rows)
        if monitor.demoted(name, "1") != before:
            return i + 1
    return -1


def test_the_threshold_spends_alpha_over_the_horizon() -> None:
    config = DriftConfig()
    assert DriftMonitor().threshold == pytest.approx(math.log(BETS * config.horizon / config.alpha))
    with pytest.raises(ValueError, match="alpha"):
        log_threshold(0.0, 100)
    with pytest.raises(ValueError, match="invalid drift configuration"):
        DriftConfig(alpha=1.5)


@pytest.mark.parametrize(
    "stream",
    [minilm(GATE), two_point(GATE)],
    ids=["minilm-shaped at the gate", "two-point at the gate"],
)
def test_no_drift_holds_the_false_demotion_bound(stream: Stream) -> None:
    """40 seeded variants, 2500 shadowed requests each, every request's mean agreement exactly at the gate
    (the hardest case the null allows). Each is falsely demoted with probability <= alpha * 2500 / horizon
    = 2.5e-4, so all 40 together with probability <= 0.01: none may be. A test that trusted its repeated
    looks less (alpha 0.5 over a horizon of 1) demotes some of the same streams: they can fail it."""
    streams = [stream(np.random.default_rng(seed), 2500) for seed in range(40)]
    strict = [first_verdict(DriftMonitor(), MINILM, xs) for xs in streams]
    assert strict == [-1] * 40
    loose = DriftMonitor(DriftConfig(alpha=0.5, horizon=1))
    assert sum(first_verdict(loose, MINILM, xs, f"m.v{i}") > 0 for i, xs in enumerate(streams)) >= 5


@pytest.mark.parametrize("shape", ["shift", "scale"])
def test_a_two_point_drop_is_demoted_within_200_requests(shape: str) -> None:
    """MiniLM-shaped agreement at its card's value, then from a random request on 2 points lower on the
    mean (every cosine 0.02 lower, or every loss 1 - cosine scaled up to match): demoted after the drop,
    within 200 shadowed requests, in at least 49 of 50 seeds; never before it."""
    delays = []
    for seed in range(50):
        rng = np.random.default_rng(seed)
        at = int(rng.integers(100, 1000))
        xs = minilm()(rng, at + 400)
        after = minilm(EXPECTED - 0.02)(rng, 400) if shape == "scale" else xs[at:] - 0.02
        xs[at:] = after
        delays.append(first_verdict(DriftMonitor(), MINILM, xs) - at)
    assert min(delays) > 0  # -1 - at, or a demotion before the drop, would be <= 0
    assert sum(d <= 200 for d in delays) >= 49
    assert float(np.median(delays)) <= 60


def test_a_demoted_variant_recovers_once_it_is_back_above_its_gate() -> None:
    """A broken variant (agreement ~0.5) is demoted within 10 requests (min_samples); while it stays
    exactly at its gate it does not recover (2500 requests, the null of the recovery test); once it agrees
    well above the gate (0.999 against 0.98) it recovers, and is watched for demotion again."""
    card = tiny_card("m.int8", "int8")  # gate 0.98
    monitor = DriftMonitor(DriftConfig(min_samples=10))
    rng = np.random.default_rng(3)
    assert first_verdict(monitor, card, 0.5 + 0.05 * rng.standard_normal(50)) == 10
    assert monitor.demoted("m.int8", "1")
    assert first_verdict(monitor, card, two_point(expectation(card)[1])(rng, 2500)) == -1
    healthy = np.clip(0.999 + 0.0005 * rng.standard_normal(5000), -1, 1)
    recovered = first_verdict(monitor, card, healthy)
    assert 0 < recovered <= 5000 and not monitor.demoted("m.int8", "1")
    state = monitor.state("m", "m.int8", "1")
    assert state is not None and state.samples == 10 + 2500 + recovered and state.evidence <= 0.0


def test_the_rows_of_one_request_count_once() -> None:
    """The same per-request means, sent as 64 equal rows or as 1 row: the same samples, the same evidence,
    demoted at the same request; a request's rows are averaged (16 agreeing + 16 not = one value 0.5)."""
    values = np.concatenate(
        [minilm()(np.random.default_rng(5), 300), minilm(0.95)(np.random.default_rng(6), 100)]
    )
    one, many = DriftMonitor(), DriftMonitor()
    assert first_verdict(one, MINILM, values) == first_verdict(many, MINILM, values, rows=64) > 300
    a, b = one.state("m", "m.int8", "1"), many.state("m", "m.int8", "1")
    assert a is not None and b is not None
    assert (a.samples, a.evidence, a.live) == pytest.approx((b.samples, b.evidence, b.live))
    mixed = DriftMonitor()
    mixed.record(
        "c", "c.int8", "1", tiny_card("c.int8", "int8", task="classification"), [1.0] * 16 + [0.0] * 16
    )
    state = mixed.state("c", "c.int8", "1")
    assert state is not None and state.samples == 1 and state.live == 0.5


def test_the_detector_bets_only_in_its_direction() -> None:
    """Values above the gate never raise the demotion statistic, values below never raise the recovery
    one; a value at the top of the range does not make the wealth negative (bets stay below 1/(hi - g))."""
    below = Detector(Direction.BELOW, 0.99, -1.0, 1.0, 10.0)
    above = Detector(Direction.ABOVE, 0.99, -1.0, 1.0, 10.0)
    for x in (1.0, 0.995, 1.0000001):
        assert not below.update(x) and below.evidence < 0
    for x in (-1.0, 0.5, 0.98):
        assert not above.update(x) and above.evidence < 0
    assert [below.update(0.0) for _ in range(3)] == [False, False, True]  # log(1 + 90 * 0.99) each
    assert below.alarm and below.count == 6
    below.reset()
    assert below.count == 0 and below.evidence == 0.0
