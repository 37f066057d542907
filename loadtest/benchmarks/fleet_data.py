"""The data of the ``fleet`` benchmark section: its systems and points, one window with the CPU of each of
the section's processes, what a run returns, and ``View``, the medians of one run (undisturbed windows
only; all of them, flagged, when every window of a point was disturbed)."""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.benchmarks.common import Measured, kept, median

MODEL = "minilm.int8"
DIRECT = "triton"  # client -> Triton 1
GATEWAY = "gateway"  # client -> gateway (--placement remote, Triton 1) -> Triton 1
GATEWAY_NO_DELAY = "gateway, queue delay 0"  # the same, the gateway's max_queue_delay set to 0
GATEWAY_TWO = "gateway, 2 servers"  # client -> gateway (Triton 1, Triton 2) -> Triton 1 or 2
HOP_SYSTEMS = (DIRECT, GATEWAY, GATEWAY_NO_DELAY)
HOP_CONCURRENCY = (1, 16, 32)
SCALE_CONCURRENCY = (16, 32)


@dataclass(frozen=True, slots=True)
class Point:
    system: str
    concurrency: int


def points() -> list[Point]:
    hop = [Point(s, c) for s in HOP_SYSTEMS for c in HOP_CONCURRENCY]
    return hop + [Point(GATEWAY_TWO, c) for c in SCALE_CONCURRENCY]  # (b)'s one-server row is GATEWAY's


@dataclass(frozen=True, slots=True)
class FleetWindow:
    """A monitored window and the CPU (cores) each process of the section used in it, by name
    (``gateway``, ``gateway, queue delay 0``, ..., ``triton 1``, ``triton 2``; a Triton with its stubs)."""

    measured: Measured
    cores: dict[str, float]

    @property
    def disturbed(self) -> bool:
        return self.measured.disturbed


@dataclass(frozen=True, slots=True)
class Setup:
    command: str
    date: str
    quick: bool
    rounds: int
    payload: str
    cores: int
    triton: str  # each Triton server's configuration, in words
    triton_threads: int  # intra-op threads of each server's one instance
    gateways: dict[str, str]  # system -> its exact `varigate serve` command, as markdown
    uses: dict[str, tuple[str, ...]]  # system -> the processes (names in FleetWindow.cores) it runs on
    windows_s: tuple[float, float, float]  # concurrency 1, loaded, warm-up


@dataclass(frozen=True, slots=True)
class Results:
    measured: dict[Point, list[FleetWindow]]


class View:
    """Medians of one run by system and concurrency."""

    def __init__(self, results: Results, setup: Setup) -> None:
        self.r, self.s = results, setup

    def windows(self, system: str, c: int) -> list[FleetWindow]:
        return self.r.measured.get(Point(system, c), [])

    def kept(self, system: str, c: int) -> tuple[list[FleetWindow], bool]:
        good, flagged = kept([w.measured for w in self.windows(system, c)])
        ids = {id(m) for m in good}
        return [w for w in self.windows(system, c) if id(w.measured) in ids], flagged

    def tput(self, system: str, c: int) -> float | None:
        return median(w.measured.summary.throughput_per_s for w in self.kept(system, c)[0])

    def lat(self, system: str, c: int, q: str) -> float | None:
        return median(w.measured.summary.latency_ms[q] for w in self.kept(system, c)[0])

    def best(self, system: str) -> tuple[float | None, int]:
        """The most throughput over the loaded concurrencies, and where."""
        found = {c: self.tput(system, c) for c in SCALE_CONCURRENCY}
        c = max(found, key=lambda k: found[k] or 0.0)
        return found[c], c

    def cpu(self, system: str, c: int, role: str) -> float | None:
        """Median cores of the system's ``gateway`` or ``triton`` processes (Tritons summed)."""
        names = [n for n in self.s.uses[system] if n.startswith(role)]
        if not names:
            return None
        return median(sum(w.cores.get(n, 0.0) for n in names) for w in self.kept(system, c)[0])

    def section_cpu(self, system: str, c: int) -> float | None:
        """Median cores of the load generator and every process of the section (idle ones too)."""
        kept = self.kept(system, c)[0]
        return median(w.measured.generator_cores + sum(w.cores.values()) for w in kept)

    def generator_cpu(self, system: str, c: int) -> float | None:
        return median(w.measured.generator_cores for w in self.kept(system, c)[0])

    def mean_batch(self, system: str, c: int) -> float | None:
        return median(w.measured.mean_batch_rows for w in self.kept(system, c)[0])

    def failed(self, system: str, c: int) -> int:
        return sum(w.measured.summary.error_count for w in self.windows(system, c))

    def round_ratios(self, system: str, base: str, c: int) -> list[float]:
        """Throughput of ``system`` over ``base`` in each round where both windows were kept."""
        out = []
        for a, b in zip(self.windows(system, c), self.windows(base, c), strict=False):
            ta, tb = a.measured.summary.throughput_per_s, b.measured.summary.throughput_per_s
            if not a.disturbed and not b.disturbed and tb > 0:
                out.append(ta / tb)
        return out
