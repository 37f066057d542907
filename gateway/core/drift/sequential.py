"""The drift test: a one-sided, anytime-valid change detector for the mean of bounded per-request values.

Which test. A CUSUM e-detector built on testing by betting (Shin, Ramdas & Rinaldo, *E-detectors*, 2023;
Waudby-Smith & Ramdas, *Estimating means of bounded random variables by betting*, 2023). Each shadowed
request gives one value ``x`` in a known range ``[lo, hi]`` (cosine: ``[-1, 1]``, used as is, no clipping,
the same as mapping ``(c + 1) / 2`` onto ``[0, 1]``; top-1: the fraction of agreeing rows, ``[0, 1]``).

- ``Direction.BELOW`` (demotion) bets that the mean fell below the gate ``g``: one bet size ``b`` turns a
  value into the e-value ``1 + b (g - x)``, which is >= 0 for every ``x <= hi`` when ``b <= 1 / (hi - g)``.
- ``Direction.ABOVE`` (recovery) bets that it rose above it: ``1 + b (x - g)``, ``b <= 1 / (g - lo)``.

``BETS`` fixed bet sizes (the largest ``TOP_BET`` of the bound, each next one half the last) cover drops from
far below the gate (a broken variant) to just below it. For each bet size the statistic is Page's CUSUM in
log space, ``S = max(S, 0) + log(e)``: the log-wealth of the best bettor that started after any earlier
request. An alarm is any statistic reaching ``log(BETS * horizon / alpha)``.

Error rates. Under the null for ``BELOW`` (every request's agreement has mean >= ``g`` given the requests
before it), each bettor's wealth from a fixed start is a nonnegative supermartingale from 1, so by Ville's
inequality it ever reaches ``BETS * horizon / alpha`` with probability <= ``alpha / (BETS * horizon)``; a
union over the ``m`` starting points and the ``BETS`` sizes bounds the probability of a false alarm within
the first ``m`` requests by ``alpha * m / horizon``, however often the statistic is looked at (after every
request). ``ABOVE`` has the same bound with the null "mean <= ``g``". The mean false alarm time is at least
``horizon / alpha`` requests as well.

What it assumes. The values' range, and that the null holds request by request (requests are the
independent units: rows of one request are averaged into one value first and may depend on each other in
any way; no distribution, no variance, no independence between requests is assumed beyond the conditional
mean). What it costs: no bounded test can bet more than ``1 / (g - lo)`` on a rise, so recovery of a
variant whose mean is ``d`` above its gate needs about ``log(threshold) (g - lo) / d`` requests (slow for a
thin margin); a drop far below the gate is found in a few requests (bets up to ``1 / (hi - g)``).
"""

from __future__ import annotations

import math
from enum import StrEnum

BETS = 8  # bet sizes per direction
TOP_BET = 0.9  # the largest bet, as a fraction of the largest one that keeps every e-value >= 0
_MIN_SPAN = 1e-6  # a gate at the end of the range: bets stay finite


class Direction(StrEnum):
    BELOW = "below"  # the mean fell below the gate: demotion
    ABOVE = "above"  # the mean is back above the gate: recovery


def log_threshold(alpha: float, horizon: int, bets: int = BETS) -> float:
    """The log-wealth an alarm needs: false alarms within ``horizon`` requests have probability <= alpha."""
    if not 0 < alpha < 1 or horizon < 1 or bets < 1:
        raise ValueError(f"alpha must be in (0, 1) and horizon, bets >= 1: got {alpha}, {horizon}, {bets}")
    return math.log(bets * horizon / alpha)


class Detector:
    """One direction's CUSUM statistics; ``update`` after each request, ``alarm`` when evidence suffices."""

    __slots__ = ("_bets", "_log_s", "count", "direction", "gate", "hi", "lo", "threshold")

    def __init__(self, direction: Direction, gate: float, lo: float, hi: float, threshold: float) -> None:
        if not lo < hi:
            raise ValueError(f"range [{lo}, {hi}] is empty")
        self.direction, self.lo, self.hi, self.threshold = direction, lo, hi, threshold
        self.gate = min(max(gate, lo + _MIN_SPAN), hi - _MIN_SPAN)
        span = hi - self.gate if direction is Direction.BELOW else self.gate - lo
        self._bets = tuple(TOP_BET / span / 2**j for j in range(BETS))
        self._log_s = [0.0] * BETS
        self.count = 0  # requests since the start (or the last reset)

    def update(self, x: float) -> bool:
        """Take one request's value; whether the evidence now reaches the threshold."""
        x = min(max(x, self.lo), self.hi)  # rounding: a cosine of 1.0000001
        gap = self.gate - x if self.direction is Direction.BELOW else x - self.gate
        log1p = math.log1p
        self._log_s = log_s = [
            (s if s > 0.0 else 0.0) + log1p(b * gap) for s, b in zip(self._log_s, self._bets, strict=True)
        ]
        self.count += 1
        return max(log_s) >= self.threshold

    @property
    def evidence(self) -> float:
        """The largest statistic, in nats (an alarm at ``threshold``)."""
        return max(self._log_s)

    @property
    def alarm(self) -> bool:
        return self.evidence >= self.threshold

    def reset(self) -> None:
        self._log_s = [0.0] * BETS
        self.count = 0
