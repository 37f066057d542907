"""Variant selection under load (issue 13): varigate's late binding (``--policy slo``: one EDF queue per
logical model, the variant picked per batch) against every baseline, side by side in one run, on MiniLM
fp32 + int8 + pruned-structured-int8.

Protocol. Four servers run at once on loopback, one is driven at a time (gRPC, this toolkit's open loop):
the baseline gateway (``--policy infaas --shadow-fraction 0``) serves the static policies by pinning
``minilm.<variant>`` (Triton's batcher semantics) and the INFaaS-style policy on ``minilm``; a gateway with
``--policy per-request`` (the previous per-request SLO policy) and one with ``--policy slo``, both
``--slo-infeasible shed`` (a request no variant can answer in time is refused at once) with shadowing at
its default; a real Triton server (``loadtest.peers.triton``, as the peers section runs it) serving fp32
and int8 statically. A gateway that refuses its flags (``per-request`` before late binding lands) or a
Triton that cannot be installed is left out with a printed note.

Calibration, in the same run: the SLO is ``SLO_MULTIPLE`` (4) x fp32's batch-1 p99 (closed loop,
concurrency 1, pinned fp32); C per variant is the throughput of a saturated closed loop (concurrency 32)
on the pinned variant. Workloads and lengths: ``policy_plan``. Each repetition runs every workload; the
policies of one workload run back to back on the same arrivals, their order rotated between repetitions;
before each run every server's CPU must fall quiet (queues drained). A request unanswered after 5 SLOs
(at least 1 s) is cancelled: it is a miss anyway.

``python -m loadtest.benchmarks.policy --quick`` is the smoke path: one repetition at 0.15x lengths (about
3 minutes with MiniLM, servers' start-up included), built variants only, the markdown on standard output,
plots under ``--docs``. Not a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from loadtest import payloads
from loadtest.benchmarks import common
from loadtest.benchmarks.peers import Server
from loadtest.benchmarks.policy_plan import (
    BATCH1_S,
    CAPACITY_CONCURRENCY,
    CAPACITY_S,
    CAPACITY_WARMUP_S,
    GATEWAY_ARGS,
    OURS,
    SLO_MULTIPLE,
    VARIANTS,
    Plan,
    Target,
    order,
    targets,
)
from loadtest.benchmarks.policy_render import render
from loadtest.benchmarks.policy_report import Calibration, Results, outcome
from loadtest.benchmarks.policy_servers import PROTOCOL, gateway_state, settle, start_servers
from loadtest.clients import Driver, make_driver
from loadtest.engine import ClosedLoop, OpenLoop, execute
from varigate.contract.card import read_card
from varigate.contract.layout import model_file, model_name

LOGICAL, SEQ_LEN = "minilm", 64
CALIBRATION_MIN_SCALE = 0.5  # the quick path's calibration windows are shortened at most this much
CALIBRATION_TRIES = 3


async def calibrate(drivers: dict[str, Driver], pids: tuple[int, ...], plan: Plan) -> Calibration:
    """The SLO from fp32's batch-1 p99; C of each pinned variant from a saturated closed loop. Each window
    is taken again (up to ``CALIBRATION_TRIES`` times) while it is disturbed: every load derives from C."""
    scale = max(plan.scale, CALIBRATION_MIN_SCALE)  # a saturated window needs several batches
    for d in drivers.values():  # sessions warm, connections up
        await execute(d, ClosedLoop(2, plan.warm_s))
    disturbed = []

    async def clean(driver: Driver, load: ClosedLoop, warm: float, name: str) -> common.Measured:
        for _ in range(CALIBRATION_TRIES):
            m = await common.window(driver, load, pids, warmup_s=warm)
            if not m.disturbed:
                return m
        disturbed.append(name)
        return m

    b1 = await clean(drivers["fp32"], ClosedLoop(1, BATCH1_S * scale), 0.0, "batch-1 fp32")
    p99 = b1.summary.latency_ms["p99"] or math.nan
    warm = CAPACITY_WARMUP_S * scale
    capacity = {
        v: (
            await clean(d, ClosedLoop(CAPACITY_CONCURRENCY, CAPACITY_S * scale + warm), warm, f"C({v})")
        ).summary.throughput_per_s
        for v, d in drivers.items()
    }
    return Calibration(p99, max(1, round(SLO_MULTIPLE * p99)), capacity, tuple(disturbed))


async def measure(
    servers: dict[str, Server],
    policies: dict[str, Target],
    load: payloads.Payloads,
    losses: dict[str, float],
    plan: Plan,
    logical: str,
) -> Results:
    base = servers["baseline"]
    pinned = [v for v in VARIANTS if f"static {v}" in policies]
    cal_drivers = {v: make_driver(PROTOCOL, base.url[PROTOCOL], model_name(logical, v), load) for v in pinned}
    try:
        cal = await calibrate(cal_drivers, base.pids(), plan)
    finally:
        for d in cal_drivers.values():
            await d.close()
    print(
        f"   fp32 batch-1 p99 {cal.p99_b1_ms:.1f} ms, SLO {cal.slo_ms} ms, C "
        + ", ".join(f"{v} {c:.1f}/s" for v, c in cal.capacity.items()),
        file=sys.stderr,
        flush=True,
    )
    results = Results(cal, plan.workloads(cal.capacity["fp32"]))
    drivers = {
        p: make_driver(PROTOCOL, servers[t.server].url[PROTOCOL], t.model, load, timeout_s=cal.timeout_s)
        for p, t in policies.items()
    }
    pids = {name: s.pids() for name, s in servers.items()}
    everyone = tuple(pid for ps in pids.values() for pid in ps)
    try:
        for p, d in drivers.items():
            await execute(d, ClosedLoop(2, plan.warm_s), server_pids=pids[policies[p].server])
        for rep in range(plan.repetitions):
            for n, w in enumerate(results.workloads):
                print(
                    f"   rep {rep + 1}/{plan.repetitions}, [{n + 1}/{len(results.workloads)}] {w.name}",
                    file=sys.stderr,
                    flush=True,
                )
                schedule = w.schedule(rep)
                for p in order(list(policies), rep, plan.repetitions):
                    results.settle_s.append(await settle(everyone))
                    t = policies[p]
                    m = await common.window(
                        drivers[p],
                        OpenLoop(schedule),
                        pids[t.server],
                        slo_ms=cal.slo_ms,
                        send_slo=t.send_slo,
                        drain_timeout_s=cal.timeout_s,
                    )
                    results.outcomes.append(outcome(w.name, p, rep, m.summary, losses, m.disturbed))
                    if p == OURS and w.kind == "bursts":
                        results.burst_runs.append(m.run)
    finally:
        for d in drivers.values():
            await d.close()
    return results


def bench(
    repo: Path,
    logical: str,
    load: payloads.Payloads,
    plan: Plan,
    docs: Path,
    *,
    with_triton: bool = True,
    gateway_args: Mapping[str, Sequence[str]] = GATEWAY_ARGS,
) -> str:
    """Run the section on ``repo``'s ``logical`` model; the markdown (plots written under ``docs/plots``)."""
    variants = [v for v in VARIANTS if model_file(repo / model_name(logical, v)).is_file()]
    if "fp32" not in variants:
        raise SystemExit(f"{repo} has no {model_name(logical, 'fp32')}: the SLO and C come from it")
    losses = {
        model_name(logical, v): read_card(repo / model_name(logical, v)).accuracy.relative_loss
        for v in variants
    }
    with tempfile.TemporaryDirectory(prefix="varigate-policy-") as tmp, ExitStack() as stack:
        servers, notes = start_servers(stack, repo, Path(tmp), logical, variants, with_triton, gateway_args)
        policies = {
            p: t
            for p, t in targets(logical).items()
            if t.server in servers and (not t.variant or t.variant in variants)
        }
        notes += [
            f"{p} is not run: {logical} has no {t.variant} variant"
            for p, t in targets(logical).items()
            if t.variant and t.variant not in variants and t.server in servers
        ]
        for note in notes:
            print(f"   note: {note}", file=sys.stderr, flush=True)
        results = asyncio.run(measure(servers, policies, load, losses, plan, logical))
        state = gateway_state(servers[OURS].metrics_url or "")
        described = {name: s.description for name, s in servers.items()}
    return render(results, plan, losses, notes, described, state, load.description, docs, logical)


def run(args: argparse.Namespace) -> str:
    """The section (``loadtest.benchmarks``); with ``quick`` (or ``policy_quick``) the smoke path, which
    builds nothing: it runs on the variants the repository has."""
    repo: Path = args.repository
    quick = bool(getattr(args, "quick", False) or getattr(args, "policy_quick", False))
    if not quick:
        common.ensure_variants(repo, LOGICAL, ["int8", "pruned-structured-int8"])
    load = payloads.sentences(256, seq_len=SEQ_LEN)
    plan = Plan.quick() if quick else Plan()
    return bench(repo, LOGICAL, load, plan, args.docs, with_triton=not getattr(args, "no_triton", False))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.benchmarks.policy", description=__doc__)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--docs", type=Path, default=Path(tempfile.gettempdir()) / "varigate-policy-quick")
    p.add_argument("--quick", action="store_true", help="one repetition at 0.15x lengths (smoke)")
    p.add_argument("--no-triton", action="store_true", help="leave the Triton baseline out")
    print(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
