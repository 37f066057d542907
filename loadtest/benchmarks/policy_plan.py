"""What the policy section runs: the policies (which server, which model, whether the SLO is sent), the
workloads in multiples of C(fp32), their lengths, and the order of each repetition.

Lengths (full run; ``Plan.quick`` scales every duration by ``QUICK_SCALE`` and runs one repetition): Poisson
4 s per load; on/off bursts 10 s (3 C for 1.5 s at the start of every 5 s, 0.5 C between); a step from
1 C to 2 C after 4 s of 8; the production-shaped trace 12 s (``loadtest.trace``: a compressed day, trace
minutes of 0.25 s, mean 0.7 C). Eight policies, seven workloads, three repetitions: 168 runs, about
24 minutes with start-up, calibration and the settling between runs on this 2-core machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from loadtest import arrivals, trace
from loadtest.arrivals import Piecewise, Schedule

SLO_MULTIPLE = 4  # the SLO is 4x fp32's batch-1 p99 (closed loop, concurrency 1)
REPETITIONS, QUICK_SCALE = 3, 0.15
POISSON_LOADS = (0.5, 1.0, 1.5, 2.0)  # x C(fp32)
POISSON_S, BURST_S, BURST_PERIOD_S, BURST_ON_S, STEP_S, TRACE_S = 4.0, 10.0, 5.0, 1.5, 8.0, 12.0
BURST_LOAD, BURST_BASE, STEP_FROM, STEP_TO, TRACE_LOAD = 3.0, 0.5, 1.0, 2.0, 0.7
CAPACITY_CONCURRENCY, CAPACITY_S, CAPACITY_WARMUP_S, BATCH1_S = 32, 5.0, 1.0, 3.0
VARIANTS = ("fp32", "int8", "pruned-structured-int8")  # the static baselines, pinned
TRITON_VARIANTS = ("fp32", "int8")
OURS = "varigate"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a policy's requests go: a server of the section, a model name, whether ``slo_ms`` is sent."""

    server: str  # "baseline" | "per-request" | "varigate" | "triton"
    model: str
    send_slo: bool = True
    variant: str = ""  # the pinned variant, for the static policies


def targets(logical: str) -> dict[str, Target]:
    """Every policy of the section, varigate first."""
    out = {
        OURS: Target("varigate", logical),
        "per-request": Target("per-request", logical),
        "INFaaS-style": Target("baseline", logical),
    }
    for v in VARIANTS:
        out[f"static {v}"] = Target("baseline", f"{logical}.{v}", variant=v)
    for v in TRITON_VARIANTS:  # Triton ignores varigate's slo_ms; it is not sent
        out[f"Triton {v}"] = Target("triton", f"{logical}.{v}", send_slo=False, variant=v)
    return out


# the gateways' flags; the static policies pin a variant on the baseline gateway (Triton's semantics)
GATEWAY_ARGS = {
    "baseline": ("--policy", "infaas", "--shadow-fraction", "0"),
    "per-request": ("--policy", "per-request", "--slo-infeasible", "shed"),
    "varigate": ("--policy", "slo", "--slo-infeasible", "shed"),
}


@dataclass(frozen=True, slots=True)
class Workload:
    """One load shape. ``load``: mean offered rate / C(fp32); ``peak_per_s``: the highest rate it offers;
    ``processes``: one per repetition (the trace is a new day each time), else one for all."""

    name: str
    kind: str  # "poisson" | "bursts" | "step" | "trace"
    load: float
    peak_per_s: float
    seconds: float
    processes: tuple[Piecewise, ...]

    def schedule(self, rep: int) -> Schedule:
        """The arrivals of repetition ``rep``: the same for every policy of that repetition."""
        process = self.processes[rep % len(self.processes)]
        return arrivals.schedule(process, self.seconds, seed=1000 + rep, description=self.name)


@dataclass(frozen=True, slots=True)
class Plan:
    repetitions: int = REPETITIONS
    scale: float = 1.0  # every duration multiplied
    kinds: tuple[str, ...] = ("poisson", "bursts", "step", "trace")

    @property
    def warm_s(self) -> float:
        """Seconds of closed loop that warm a driver's connection and the server's sessions."""
        return min(1.0, 3 * self.scale)

    @staticmethod
    def quick(kinds: Sequence[str] = ("poisson", "bursts", "step", "trace")) -> Plan:
        return Plan(1, QUICK_SCALE, tuple(kinds))

    def workloads(self, c: float) -> list[Workload]:
        """The workloads at C(fp32) = ``c`` requests/s."""
        k = self.scale
        out = [
            Workload(f"Poisson {x:g} C", "poisson", x, x * c, POISSON_S * k, (arrivals.poisson(x * c),))
            for x in POISSON_LOADS
        ]
        period, on = BURST_PERIOD_S * k, BURST_ON_S * k
        mean = (BURST_LOAD * on + BURST_BASE * (period - on)) / period
        bursts = arrivals.bursts(BURST_BASE * c, BURST_LOAD * c, on, period)
        name = f"bursts {BURST_LOAD:g} C, {on:g} s / {period:g} s"
        out.append(Workload(name, "bursts", mean, BURST_LOAD * c, BURST_S * k, (bursts,)))
        step = arrivals.step(STEP_FROM * c, STEP_TO * c, STEP_S * k / 2)
        name = f"step {STEP_FROM:g} C -> {STEP_TO:g} C"
        out.append(Workload(name, "step", (STEP_FROM + STEP_TO) / 2, STEP_TO * c, STEP_S * k, (step,)))
        days = [self.trace(c, rep) for rep in range(self.repetitions)]
        peak = max(d.peak_per_s for d in days)
        procs = tuple(d.process for d in days)
        out.append(Workload(f"trace, mean {TRACE_LOAD:g} C", "trace", TRACE_LOAD, peak, TRACE_S * k, procs))
        return [w for w in out if w.kind in self.kinds]

    def trace(self, c: float, rep: int) -> trace.Trace:
        shape = trace.TraceShape(mean_rate=TRACE_LOAD * c, duration_s=TRACE_S * self.scale)
        if self.scale != 1.0:  # as many trace minutes in a shorter run
            shape = replace(shape, minute_s=shape.minute_s * self.scale)
        return trace.generate(shape, seed=rep)


def order(policies: Sequence[str], rep: int, repetitions: int) -> list[str]:
    """The policies of repetition ``rep``, rotated so each runs early and late across the repetitions."""
    shift = (rep * len(policies)) // max(repetitions, 1)
    return [*policies[shift:], *policies[:shift]]
