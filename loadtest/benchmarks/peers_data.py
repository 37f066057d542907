"""The data of the ``peers`` benchmark section: its points, what a run returns, and ``View``, the medians
of one run looked up by system, variant, protocol and concurrency (undisturbed windows only; all of them,
flagged, when every window of a point was disturbed)."""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.benchmarks.common import Measured
from loadtest.benchmarks.gateway_tables import kept_median, latency_ms, raw_median
from loadtest.benchmarks.peers_profile import Profile
from loadtest.benchmarks.raw import RawWindow

LOGICAL = "minilm"
MLSERVER_HTTP = "http-json"  # MLServer refuses the binary tensor extension (422): its HTTP rows are JSON


@dataclass(frozen=True, slots=True)
class Point:
    system: str  # "varigate", "varigate --layout X", "triton", "mlserver"
    variant: str
    protocol: str  # as the table shows it ("http-binary" also for MLServer's JSON)
    concurrency: int

    @property
    def model(self) -> str:
        return f"{LOGICAL}.{self.variant}"

    @property
    def wire(self) -> str:
        """The protocol the driver speaks."""
        return MLSERVER_HTTP if self.system == "mlserver" and self.protocol != "grpc" else self.protocol


@dataclass(frozen=True, slots=True)
class Results:
    measured: dict[Point, list[Measured]]
    raw: dict[tuple[str, int], list[RawWindow]]  # (variant, batch)
    profiles: list[Profile]


@dataclass(frozen=True, slots=True)
class Setup:
    command: str
    date: str
    rounds: int
    payload: str
    cores: int
    systems: dict[str, str]
    windows_s: tuple[float, float, float, float]  # raw, concurrency 1, loaded, warm-up


class View:
    """Medians of one run, looked up by system, variant, protocol and concurrency."""

    def __init__(self, results: Results) -> None:
        self.r = results
        self._by = {
            (p.system, p.variant, p.protocol, p.concurrency): ms for p, ms in results.measured.items()
        }

    def windows(self, system: str, variant: str, protocol: str, c: int) -> list[Measured]:
        return self._by.get((system, variant, protocol, c), [])

    def tput(self, system: str, variant: str, protocol: str, c: int) -> float | None:
        return kept_median(self.windows(system, variant, protocol, c), lambda m: m.summary.throughput_per_s)

    def lat(self, system: str, variant: str, protocol: str, c: int, q: str) -> float | None:
        ms = self.windows(system, variant, protocol, c)
        return latency_ms(ms, q) if ms else None

    def best(self, system: str, variant: str, protocol: str) -> float | None:
        found = [self.tput(system, variant, protocol, c) for c in self.concurrencies()]
        return max((t for t in found if t is not None), default=None)

    def concurrencies(self) -> list[int]:
        return sorted({p.concurrency for p in self.r.measured})

    def raw_best(self, variant: str) -> tuple[float | None, int]:
        tput = {
            b: raw_median(ws, lambda w: w.throughput_per_s)
            for (v, b), ws in self.r.raw.items()
            if v == variant
        }
        b = max(tput, key=lambda k: tput[k] or 0.0)
        return tput[b], b

    def raw_p50_b1(self, variant: str) -> float | None:
        return raw_median(self.r.raw.get((variant, 1), []), lambda w: w.p50_ms)
