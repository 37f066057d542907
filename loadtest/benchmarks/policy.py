"""Variant selection under load (issue 5): static fp32, static int8, INFaaS-style and varigate's SLO
policy on MiniLM, with this toolkit's open-loop arrivals, side by side in one run.

Protocol. Every MiniLM variant in the repository is served (the gateway's defaults: one intra-op thread,
two executor workers). C and the SLOs come from the same run: the SLO is 4x fp32's batch-1 p99 (closed
loop, concurrency 1) and the tighter SLO 2x; C is the highest Poisson rate at which fp32 alone keeps 99 % of
its requests inside the SLO (open-loop probes of 4 s: up by 1.3x, then bisection). Loads:
Poisson at 0.5, 1.0, 1.3 and 1.6 C; bursts of 3 C for 2 s in every 10 s (0.5 C between them); a step from
1 C to 2.5 C. The static policies pin ``minilm.fp32`` / ``minilm.int8`` on a gateway with ``--policy
infaas --shadow-fraction 0``, which also runs the INFaaS-style baseline (``minilm``); varigate is
``--policy slo --slo-infeasible shed`` (it refuses, with 429, a request that no variant can answer in
time, instead of serving it late; shadowing 5 % of requests on spare capacity included). For each load
the four policies run back to back. SLO attainment counts every arrival (refusals and timeouts are
misses); accuracy loss is the mean card relative loss of the variants that answered; switches are changes
of serving variant between consecutive answers.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
from pathlib import Path

from loadtest import arrivals, payloads
from loadtest.benchmarks import common
from loadtest.benchmarks.policy_report import POLICIES, Calibration, Row, table, verdict
from loadtest.clients import Driver, make_driver
from loadtest.engine import ClosedLoop, OpenLoop, execute
from loadtest.metrics_check import parse, scrape
from loadtest.report import summarize
from loadtest.server import GatewayProcess
from varigate.contract.card import read_card
from varigate.contract.layout import MODEL_NAME_SEPARATOR, VERSION_DIR

COMMAND = "python -m loadtest.benchmarks --only policy"
LOGICAL, SEQ_LEN, PROTOCOL = "minilm", 64, "grpc"
POISSON_S, BURST_S, STEP_S, WARMUP_S = 6.0, 20.0, 12.0, 1.0  # shortened to keep the section near 6 min
BASELINE_ARGS = ("--policy", "infaas", "--shadow-fraction", "0")
VARIGATE_ARGS = ("--policy", "slo", "--slo-infeasible", "shed")
CALIBRATION_PROBES, PROBE_S = 5, 4.0
TIMEOUT_S = 5.0  # a request not answered in 5 s is a miss anyway: cap the backlog's drain


def _loads(c: float, burst_s: float = BURST_S) -> list[tuple[str, arrivals.Piecewise, float, float]]:
    """(name, arrival process, seconds, warm-up seconds)."""
    out = [
        (f"Poisson {k:g} C", arrivals.poisson(k * c), POISSON_S + WARMUP_S, WARMUP_S)
        for k in (0.5, 1.0, 1.3, 1.6)
    ]
    out.append(("bursts 3 C, 2 s / 10 s", arrivals.bursts(0.5 * c, 3 * c, 2.0, 10.0), burst_s, 0.0))
    out.append(("step 1 C -> 2.5 C", arrivals.step(c, 2.5 * c, STEP_S / 2), STEP_S, 0.0))
    return out


async def _calibrate(driver: Driver) -> Calibration:
    """The SLOs from fp32's batch-1 p99; C by open-loop Poisson probes on fp32: up by 1.3x while a probe keeps
    99 % of its requests inside the SLO, then bisection; C is the highest rate that passed."""
    await execute(driver, ClosedLoop(2, 1.5))  # sessions warm, connections up
    c1 = summarize(await execute(driver, ClosedLoop(1, 3.0)))
    p99 = c1.latency_ms["p99"] or math.nan
    slo = max(1, round(4 * p99))
    rate, passed, failed = max(1.0, c1.throughput_per_s), 0.0, math.inf
    steps = []
    for probe in range(CALIBRATION_PROBES):
        schedule = arrivals.schedule(arrivals.poisson(rate), PROBE_S + 0.5, seed=100 + probe)
        s = summarize(
            await execute(driver, OpenLoop(schedule), slo_ms=slo, warmup_s=0.5, drain_timeout_s=TIMEOUT_S)
        )
        attained = s.slo_attainment or 0.0
        steps.append((rate, attained, s.latency_ms["p99"] or math.inf))
        if attained >= 0.99:
            passed = max(passed, rate)
        else:
            failed = min(failed, rate)
        rate = rate * 1.3 if math.isinf(failed) else (passed + failed) / 2 if passed else rate * 0.7
    return Calibration(p99, slo, max(1, round(2 * p99)), passed or rate, tuple(steps))


async def _measure(
    gateways: dict[str, GatewayProcess], load: payloads.Payloads, losses: dict[str, float]
) -> tuple[Calibration, list[Row]]:
    base, slo_gw = gateways["baseline"], gateways["varigate"]
    drivers = {
        "static fp32": make_driver(PROTOCOL, base.grpc, f"{LOGICAL}.fp32", load, timeout_s=TIMEOUT_S),
        "static int8": make_driver(PROTOCOL, base.grpc, f"{LOGICAL}.int8", load, timeout_s=TIMEOUT_S),
        "INFaaS-style": make_driver(PROTOCOL, base.grpc, LOGICAL, load, timeout_s=TIMEOUT_S),
        "varigate": make_driver(PROTOCOL, slo_gw.grpc, LOGICAL, load, timeout_s=TIMEOUT_S),
    }
    pids = {
        "static fp32": base.pid,
        "static int8": base.pid,
        "INFaaS-style": base.pid,
        "varigate": slo_gw.pid,
    }
    try:
        for driver in drivers.values():
            await execute(driver, ClosedLoop(2, 1.0))
        cal = await _calibrate(drivers["static fp32"])
        print(
            f"   fp32 batch-1 p99 {cal.p99_b1_ms:.1f} ms, SLO {cal.slo_ms} ms, C {cal.capacity_per_s:.1f}/s",
            file=sys.stderr,
            flush=True,
        )
        plan = [(cal.slo_ms, spec) for spec in _loads(cal.capacity_per_s)]
        plan += [  # the tighter SLO: fewer loads, one burst period
            (cal.tight_slo_ms, spec)
            for spec in _loads(cal.capacity_per_s, burst_s=10.0)
            if spec[0] in ("Poisson 1 C", "bursts 3 C, 2 s / 10 s")
        ]
        rows = []
        for n, (slo, (name, process, seconds, warmup)) in enumerate(plan):
            print(f"   [{n + 1}/{len(plan)}] SLO {slo} ms, {name}", file=sys.stderr, flush=True)
            for policy in POLICIES:
                schedule = arrivals.schedule(process, seconds, seed=n, description=name)
                run = await execute(
                    drivers[policy],
                    OpenLoop(schedule),
                    slo_ms=slo,
                    warmup_s=warmup,
                    server_pids=(pids[policy],),
                    drain_timeout_s=TIMEOUT_S,
                )
                s = summarize(run)
                answered = sum(s.variants.values())
                loss = (
                    sum(losses.get(v, 1.0) * k for v, k in s.variants.items()) / answered
                    if answered
                    else math.nan
                )
                rows.append(Row(slo, name, policy, s, loss))
                await asyncio.sleep(0.5)  # queues drain between runs
    finally:
        for driver in drivers.values():
            await driver.close()
    return cal, rows


def run(args: argparse.Namespace) -> str:
    repo: Path = args.repository
    common.ensure_variants(repo, LOGICAL, ["int8"])
    prefix = LOGICAL + MODEL_NAME_SEPARATOR
    models = sorted(
        p.name for p in repo.iterdir() if p.name.startswith(prefix) and (p / VERSION_DIR).is_dir()
    )
    losses = {m: read_card(repo / m).accuracy.relative_loss for m in models}
    load = payloads.sentences(256, seq_len=SEQ_LEN)
    with tempfile.TemporaryDirectory(prefix="varigate-policy-") as tmp:
        copy = common.serving_copy(repo, Path(tmp) / "repo", models)
        gateways: dict[str, GatewayProcess] = {}
        try:
            for name, extra in (("baseline", BASELINE_ARGS), ("varigate", VARIGATE_ARGS)):
                gateways[name] = GatewayProcess(copy, Path(tmp) / f"{name}.log", extra).start()
            cal, rows = asyncio.run(_measure(gateways, load, losses))
            state = _gateway_state(gateways["varigate"].metrics_url)
        finally:
            for gw in gateways.values():
                gw.stop()
    return render(cal, rows, losses, state, load.description)


def _gateway_state(metrics_url: str) -> dict[str, list[str]]:
    samples = parse(scrape(metrics_url))
    out: dict[str, list[str]] = {"dominated": [], "demoted": [], "switches": []}
    for labels, value in samples.get("varigate_variant_dominated", []):
        if value:
            out["dominated"].append(labels.get("variant", "?"))
    for labels, value in samples.get("varigate_demotions_total", []):
        if value:
            out["demoted"].append(f"{labels.get('variant', '?')} x{value:g}")
    for labels, value in samples.get("varigate_policy_switches_total", []):
        out["switches"].append(f"{labels.get('from_variant')} -> {labels.get('to_variant')}: {value:g}")
    return out


def render(
    cal: Calibration, rows: list[Row], losses: dict[str, float], state: dict[str, list[str]], payload: str
) -> str:
    lines = _intro(cal, losses, payload)
    lines += [table(rows), ""]
    lines += verdict(rows)
    lines += ["", _state(state), ""]
    return "\n".join(lines)


def _intro(cal: Calibration, losses: dict[str, float], payload: str) -> list[str]:
    """The heading, how the section ran, the calibration and the card losses."""
    return [
        "## Variant selection under load (issue 5)",
        "",
        (
            f"`{COMMAND}` ({common.today()}); MiniLM over gRPC, {payload}. Runs are shortened to fit the "
            f"benchmark command (Poisson {POISSON_S:g} s after a {WARMUP_S:g} s warm-up, bursts "
            f"{BURST_S:g} s, step {STEP_S:g} s): single runs on a shared 2-core machine, so every number is "
            "noisy; rows marked * ran while other processes used more than a quarter of a core or the "
            "hypervisor stole over 5 %. varigate runs with `--slo-infeasible shed` (its default is `serve`)."
        ),
        "",
        f"Calibration: fp32 batch-1 p99 {cal.p99_b1_ms:.1f} ms, so SLO = {cal.slo_ms} ms (4x) and the "
        f"tighter SLO = {cal.tight_slo_ms} ms (2x). C = {cal.capacity_per_s:.1f} requests/s (fp32 open-loop "
        "probes, rate: attainment, p99: "
        + "; ".join(f"{r:.1f}/s: {a:.1%}, {p:.0f} ms" for r, a, p in cal.steps)
        + ").",
        "",
        "Card losses: " + ", ".join(f"{m} {v:.3%}" for m, v in sorted(losses.items())) + ".",
        "",
    ]


def _state(state: dict[str, list[str]]) -> str:
    return (
        "varigate gateway at the end of the run: dominated (left out) "
        + (", ".join(state["dominated"]) or "none")
        + "; demoted "
        + (", ".join(state["demoted"]) or "none")
        + "; ceiling switches "
        + ("; ".join(state["switches"]) or "none")
        + "."
    )
