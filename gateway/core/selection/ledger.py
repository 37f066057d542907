"""What a logical model's served requests cost in accuracy, and which variants served them: the running
mean of their card losses that the accuracy budget holds (exponentially weighted over ``window`` requests,
bias-corrected so that the first requests get no free budget) and the recent mix, reported twice a second.
Both SLO policies keep one per logical model. Times are ``time.monotonic_ns()``."""

from __future__ import annotations

from collections import deque

from gateway.core.selection.events import PolicyObserver

S = 1_000_000_000


class Ledger:
    def __init__(self, window: int, mix_window_s: float) -> None:
        self.window, self._mix_window_ns = window, round(mix_window_s * S)
        self.ewma = 0.0  # of served requests' card loss, started at 0 (``mean`` corrects it)
        self.served = 0
        self.mix: deque[tuple[int, str]] = deque()
        self._reported_ns = -(2**62)

    def mean(self, ewma: float | None = None, n: int | None = None) -> float:
        """The bias-corrected weighted mean: the plain mean over the first requests, the exponentially
        weighted one over the last ``window`` later."""
        ewma, n = (self.ewma if ewma is None else ewma), (self.served if n is None else n)
        return ewma / (1 - (1 - 1 / self.window) ** n) if n else 0.0

    def admits(self, loss: float, budget: float) -> bool:
        """Whether the running mean stays within ``budget`` with one more request at ``loss``."""
        return self.mean(self.ewma + (loss - self.ewma) / self.window, self.served + 1) <= budget

    def room(self, loss: float, budget: float, most: int) -> int:
        """How many more requests at ``loss`` (at most ``most``) keep the running mean within ``budget``."""
        ewma, n = self.ewma, self.served
        for k in range(most):
            ewma, n = ewma + (loss - ewma) / self.window, n + 1
            if self.mean(ewma, n) > budget:
                return k
        return most

    def add(self, variant: str, loss: float, now_ns: int) -> None:
        self.ewma += (loss - self.ewma) / self.window
        self.served += 1
        self.mix.append((now_ns, variant))

    def report(self, logical: str, observer: PolicyObserver, now_ns: int, variants: list[str]) -> None:
        """The mix over the last ``mix_window_s`` (every one of ``variants`` named) and the mean loss, at
        most twice a second."""
        while self.mix and now_ns - self.mix[0][0] > self._mix_window_ns:
            self.mix.popleft()
        if now_ns - self._reported_ns < S // 2:
            return
        self._reported_ns = now_ns
        shares = {name: 0.0 for name in variants}
        for _, name in self.mix:
            shares[name] = shares.get(name, 0.0) + 1 / len(self.mix)
        observer.mix(logical, shares, self.mean())
