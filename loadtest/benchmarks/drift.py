"""Section ``drift``: the drift test (``gateway.core.drift``) on simulated shadow traffic.

No server, no model: seeded per-request agreement streams drive ``DriftMonitor.record`` directly, one value
per shadowed request, shaped like MiniLM int8's cosine agreement with fp32. The shape comes from the
shipped card (``<repository>/minilm.int8``: mean cosine, p05 and p01 cosine, the gate), else from the
numbers of the card this project's compressor wrote for minilm.int8 (``FALLBACK``, the same fields). Per
row, ``1 - cosine`` is log-normal with the card's mean, its log-sd fitted to the card's p05 or its p01,
whichever gives the heavier tail (the harder case for the test); one row per request (batches of rows
average out, which only makes detection easier).

Traffic: 50 requests/s with 5 % shadowed = 9,000 shadowed requests per hour of one variant.

- False demotions: 200 simulated hours with no drift (at the card's mean), and 50 at the hardest null
  (every request's mean exactly at the gate); target: none in an hour.
- Detection delay: a fault at a uniformly random request of the hour lowers the mean cosine by 2 points
  (each ``1 - cosine`` scaled up; or each cosine 0.02 lower), 200 seeds each; shadowed requests from the
  fault to the demotion: median, p95, max; target <= 200. Smaller and larger drops, 40 seeds each.
- Recovery (information): a demoted variant back at the card's distribution, 5 seeds, up to 100,000
  requests.

    python -m loadtest.benchmarks --only drift      (or: python -m loadtest.benchmarks.drift)
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.core.drift import monitor as monitor_module
from gateway.core.drift.monitor import DriftConfig, DriftMonitor, expectation
from gateway.core.drift.sequential import TOP_BET
from loadtest.benchmarks import common, drift_report
from varigate.contract.card import CardError, VariantCard, card_from_dict, read_card

COMMAND = "python -m loadtest.benchmarks --only drift"
RATE_PER_S, SHADOWED = 50, 0.05
HOUR = round(RATE_PER_S * SHADOWED * 3600)  # 9000 shadowed requests
NULL_HOURS, GATE_HOURS, SEEDS, DROP_SEEDS, RECOVERY_SEEDS = 200, 50, 200, 40, 5
AFTER = 2000  # requests simulated after a fault before it counts as missed
RECOVERY_LIMIT = 100_000
FALLBACK = {  # minilm.int8's card as the compressor wrote it here (relative loss 0.94 %, gate 1 %)
    "value": 0.990558732357428,
    "p05_cosine": 0.9844748827271742,
    "p01_cosine": 0.9780006291628842,
    "max_relative_loss": 0.01,
}
Z05, Z01 = 1.6449, 2.3263


@dataclass(frozen=True, slots=True)
class Shape:
    """Per-request cosine agreement: ``1 - cosine = loss * exp(spread * N(0, 1) - spread**2 / 2)``."""

    source: str
    card: VariantCard
    loss: float  # mean of 1 - cosine
    spread: float  # log-sd
    p05: float
    p01: float

    def draw(self, rng: np.random.Generator, n: int, mean: float | None = None) -> np.ndarray:
        loss = self.loss if mean is None else 1.0 - mean
        return 1.0 - loss * np.exp(self.spread * rng.standard_normal(n) - self.spread**2 / 2)

    def quantile(self, z: float) -> float:  # of the cosine, for the lower tail at -z
        return 1.0 - self.loss * math.exp(self.spread * z - self.spread**2 / 2)


def fitted(loss: float, cosine: float, z: float) -> float:
    """The log-sd that puts the cosine quantile at ``-z`` sd on ``cosine``, for a mean loss ``loss``."""
    ratio = math.log((1.0 - cosine) / loss)
    return z - math.sqrt(max(z * z - 2 * ratio, 0.0))


def shape(repository: Path) -> Shape:
    try:
        card, source = read_card(repository / "minilm.int8"), f"card {repository / 'minilm.int8'}"
        extra = card.accuracy.extra
        numbers = {
            "value": card.accuracy.value,
            "p05_cosine": float(extra["p05_cosine"]),
            "p01_cosine": float(extra["p01_cosine"]),
            "max_relative_loss": card.gate.max_relative_loss,
        }
    except (CardError, KeyError, TypeError, ValueError):
        numbers, source = FALLBACK, "no repository at hand: FALLBACK, minilm.int8's card as built here"
        card = synthetic_card(FALLBACK["value"], FALLBACK["max_relative_loss"])
    loss = 1.0 - numbers["value"]
    spread = max(fitted(loss, numbers["p05_cosine"], Z05), fitted(loss, numbers["p01_cosine"], Z01))
    return Shape(source, card, loss, spread, numbers["p05_cosine"], numbers["p01_cosine"])


def synthetic_card(value: float, max_loss: float) -> VariantCard:
    gate = {"max_relative_loss": max_loss, "passed": True, "reason": "fallback"}
    accuracy = {"metric": "mean_cosine", "value": value, "reference_value": 1.0, "relative_loss": 1 - value}
    fields = {"profile": [], "profile_conditions": {}, "size_bytes": 0, "settings": {}, "environment": {}}
    names = {"logical_model": "minilm", "variant": "int8", "model_name": "minilm.int8", "task": "embedding"}
    return card_from_dict({**names, "accuracy": accuracy, "gate": gate, **fields, "build_key": "fallback"})


def first_flip(monitor: DriftMonitor, card: VariantCard, values: np.ndarray, key: str) -> int:
    """Requests recorded until the variant's state flips (-1: never)."""
    before = monitor.demoted(key, "1")
    for i, v in enumerate(values.tolist()):
        monitor.record("minilm", key, "1", card, (v,))
        if monitor.demoted(key, "1") != before:
            return i + 1
    return -1


def false_demotions(s: Shape, hours: int, mean: float | None, seed0: int) -> int:
    """Variants (one per simulated hour) demoted at least once in their hour without drift."""
    return sum(
        first_flip(DriftMonitor(), s.card, s.draw(np.random.default_rng(seed0 + h), HOUR, mean), "m") > 0
        for h in range(hours)
    )


Fault = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def scaled(s: Shape, drop: float) -> Fault:
    return lambda xs, rng: 1.0 - (1.0 - xs) * (s.loss + drop) / s.loss


def shifted(drop: float) -> Fault:
    return lambda xs, rng: xs - drop


def delays(s: Shape, fault: Fault, seeds: int, seed0: int) -> list[int]:
    """Per seed: shadowed requests from the fault to the demotion; 0 for a demotion before the fault (a
    false one), AFTER + 1 when not demoted within AFTER requests."""
    out = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed0 + seed)
        at = int(rng.integers(0, HOUR))
        xs = s.draw(rng, at + AFTER)
        xs[at:] = fault(xs[at:], rng)
        flip = first_flip(DriftMonitor(), s.card, xs, "m")
        out.append(AFTER + 1 if flip < 0 else max(flip - at, 0))
    return out


def recoveries(s: Shape) -> list[int]:
    """Requests from a demotion (a broken variant, cosine ~0.5) until recovery at the card's distribution."""
    out = []
    for seed in range(RECOVERY_SEEDS):
        monitor, rng = DriftMonitor(), np.random.default_rng(7000 + seed)
        first_flip(monitor, s.card, np.full(20, 0.5), "m")
        flip = first_flip(monitor, s.card, s.draw(rng, RECOVERY_LIMIT), "m")
        out.append(flip if flip > 0 else RECOVERY_LIMIT + 1)
    return out


def run(args: argparse.Namespace) -> str:
    quiet = logging.getLogger(monitor_module.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # thousands of demotions, by design
    try:
        return _run(args)
    finally:
        quiet.setLevel(level)


def _run(args: argparse.Namespace) -> str:
    t0 = time.monotonic()
    s = shape(args.repository)
    expected, gate = expectation(s.card)
    config = DriftConfig()
    threshold = DriftMonitor(config).threshold
    null = {
        "no drift (card mean)": (NULL_HOURS, false_demotions(s, NULL_HOURS, None, 0)),
        "mean exactly at the gate": (GATE_HOURS, false_demotions(s, GATE_HOURS, gate, 10_000)),
    }
    faults = {
        ("2 points", "1 - cosine scaled"): delays(s, scaled(s, 0.02), SEEDS, 20_000),
        ("2 points", "every cosine - 0.02"): delays(s, shifted(0.02), SEEDS, 30_000),
        **{
            (f"{d * 100:g} point{'' if d == 0.01 else 's'}", "1 - cosine scaled"): delays(
                s, scaled(s, d), DROP_SEEDS, 40_000 + i * 1000
            )
            for i, d in enumerate((0.005, 0.01, 0.05))
        },
    }
    recovered = recoveries(s)
    margin = expected - gate
    theory = threshold / math.log1p(TOP_BET / (gate + 1.0) * margin) if margin > 0 else math.inf
    facts = drift_report.Facts(
        source=s.source,
        expected=expected,
        gate=gate,
        spread=s.spread,
        fit=(s.quantile(Z05), s.quantile(Z01), s.p05, s.p01),
        config=config,
        threshold=threshold,
        hour=HOUR,
        rate=(RATE_PER_S, SHADOWED),
        after=AFTER,
        recovery_limit=RECOVERY_LIMIT,
        recovery_theory=theory,
        seconds=time.monotonic() - t0,
    )
    head = f"Command: `{COMMAND}`, {common.today()}; simulated, {facts.seconds:.0f} s."
    return drift_report.render(head, facts, null, faults, recovered)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.benchmarks.drift", description=__doc__)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    print(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
