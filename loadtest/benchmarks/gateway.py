"""Gateway vs raw onnxruntime: MiniLM int8 at sequence length 64, side by side in one run.

Raw onnxruntime in-process (``raw.py``: best-batch throughput, batch-1 latency) against the gateway in
a subprocess on free loopback ports, driven by this toolkit's closed loop over HTTP JSON, HTTP binary and
gRPC, with real sentences packed to 64 tokens. Gateways (one per configuration; see ``CONFIGS``) run
with their default layout (one batch at a time on all cores, as the raw session runs). Every round runs
every point once, in a shuffled order; windows disturbed by steal or other processes are dropped; medians
of the rest are quoted. The generator shares the 2 cores with the gateway: its CPU is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from loadtest import arrivals, payloads, plots
from loadtest.benchmarks import common
from loadtest.benchmarks.common import Measured, kept, median
from loadtest.benchmarks.gateway_report import Results, Setup, render
from loadtest.benchmarks.raw import RawModel, RawWindow
from loadtest.clients import Driver, make_driver
from loadtest.engine import ClosedLoop, OpenLoop
from loadtest.server import GatewayProcess
from varigate.contract.layout import model_file

COMMAND = "python -m loadtest.benchmarks --only gateway"
LOGICAL, VARIANT, SEQ_LEN = "minilm", "int8", 64
MODEL = f"{LOGICAL}.{VARIANT}"
RAW_BATCHES = (1, 8, 16, 32)
PROTOCOLS = ("http-json", "http-binary", "grpc")
SATURATION_CONCURRENCY = 64  # two full batches of max_batch_size 32 outstanding
LATENCY_WINDOW_S, LOAD_WINDOW_S, RAW_WINDOW_S = 1.5, 3.0, 1.0
WARMUP_S = 0.5  # of each loaded window: left out, so a window measures the steady state
GATEWAY_ARGS: tuple[str, ...] = ()  # varigate serve's defaults (varigate/contract/execution.py)
# name -> (description, edit of config.pbtxt)
CONFIGS: dict[str, tuple[str, Callable[[Any], None] | None]] = {
    "on": (
        "dynamic batching, max_queue_delay 0 (batches form while the previous one runs)",
        common.queue_delay(0),
    ),
    "off": ("no dynamic batching (each request runs alone)", common.no_batching),
    "shipped": ("config.pbtxt as the compressor wrote it (max_queue_delay 2000 µs, adaptive)", None),
}
# (config, protocol, concurrency, window seconds)
POINTS = (
    [("on", p, 1, LATENCY_WINDOW_S) for p in PROTOCOLS]
    + [("on", p, SATURATION_CONCURRENCY, LOAD_WINDOW_S) for p in PROTOCOLS]
    + [
        ("on", "grpc", 16, LOAD_WINDOW_S),
        ("off", "grpc", 16, LOAD_WINDOW_S),
        ("shipped", "grpc", 1, LATENCY_WINDOW_S),
    ]
)
Point = tuple[str, str, int, float]


async def _measure(
    gateways: dict[str, GatewayProcess], load: payloads.Payloads, raw: RawModel, rounds: int
) -> Results:
    drivers: dict[tuple[str, str], Driver] = {}
    for cfg, proto, _, _ in POINTS:
        if (cfg, proto) not in drivers:
            drivers[(cfg, proto)] = make_driver(proto, gateways[cfg].url(proto), MODEL, load, timeout_s=60.0)
    try:
        for (cfg, _), driver in drivers.items():  # connections up, sessions warm
            await common.window(driver, ClosedLoop(4, 0.5), gateways[cfg].pid)
        points: dict[Point, list[Measured]] = {p: [] for p in POINTS}
        raws: dict[int, list[RawWindow]] = {b: [] for b in RAW_BATCHES}
        shuffle = random.Random(0)
        for r in range(rounds):
            print(f"   round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            for b in shuffle.sample(RAW_BATCHES, len(RAW_BATCHES)):
                raws[b].append(raw.window(b, RAW_WINDOW_S))
            for point in shuffle.sample(POINTS, len(POINTS)):
                cfg, proto, conc, secs = point
                gw = gateways[cfg]
                points[point].append(
                    await common.window(
                        drivers[(cfg, proto)],
                        ClosedLoop(conc, secs + (WARMUP_S if conc > 1 else 0.0)),
                        gw.pid,
                        warmup_s=WARMUP_S if conc > 1 else 0.0,
                        metrics_url=gw.metrics_url,
                        model=MODEL,
                    )
                )
        demo = await _open_loop_demo(gateways["on"], drivers[("on", "grpc")], points)
    finally:
        for driver in drivers.values():
            await driver.close()
    return Results(
        raw=raws,
        c1={p: points[("on", p, 1, LATENCY_WINDOW_S)] for p in PROTOCOLS},
        saturated={p: points[("on", p, SATURATION_CONCURRENCY, LOAD_WINDOW_S)] for p in PROTOCOLS},
        c16={c: points[(c, "grpc", 16, LOAD_WINDOW_S)] for c in ("on", "off")},
        c1_shipped=points[("shipped", "grpc", 1, LATENCY_WINDOW_S)],
        demo=demo,
    )


async def _open_loop_demo(
    gw: GatewayProcess, driver: Driver, points: dict[Point, list[Measured]]
) -> Measured | None:
    """On/off bursts over gRPC around the measured capacity C: 0.5 C, bursts of 1.5 C for 2 s every 8 s."""
    sat = median(
        m.summary.throughput_per_s for m in points[("on", "grpc", SATURATION_CONCURRENCY, LOAD_WINDOW_S)]
    )
    if not sat:
        return None
    process = arrivals.bursts(0.5 * sat, 1.5 * sat, on_s=2.0, period_s=8.0)
    desc = f"open loop, gRPC, {0.5 * sat:.0f}/s with bursts of {1.5 * sat:.0f}/s (2 s every 8 s)"
    schedule = arrivals.schedule(process, 16.0, seed=1, description=desc)
    return await common.window(driver, OpenLoop(schedule), gw.pid, metrics_url=gw.metrics_url, model=MODEL)


def run(args: argparse.Namespace) -> str:
    repo: Path = args.repository
    common.ensure_variants(repo, LOGICAL, [VARIANT])
    load = payloads.sentences(256, seq_len=SEQ_LEN)
    raw = RawModel(model_file(repo / MODEL), load, RAW_BATCHES)
    with tempfile.TemporaryDirectory(prefix="varigate-bench-") as tmp:
        gateways: dict[str, GatewayProcess] = {}
        try:
            for name, (_, edit) in CONFIGS.items():
                copy = common.serving_copy(repo, Path(tmp) / name, [MODEL], edit)
                gateways[name] = GatewayProcess(copy, Path(tmp) / f"{name}.log", GATEWAY_ARGS).start()
            results = asyncio.run(_measure(gateways, load, raw, args.rounds))
        finally:
            for gw in gateways.values():
                gw.stop()
    figures = _plots(args.docs / "benchmarks", results)
    setup = Setup(
        command=COMMAND,
        date=common.today(),
        rounds=args.rounds,
        payload=load.description,
        gateway_args=" ".join(GATEWAY_ARGS),
        configs={k: v[0] for k, v in CONFIGS.items()},
        saturation=SATURATION_CONCURRENCY,
        windows_s=(RAW_WINDOW_S, LATENCY_WINDOW_S, LOAD_WINDOW_S, WARMUP_S),
    )
    return render(results, figures, setup)


def _plots(out: Path, results: Results) -> dict[str, Path]:
    def lat(ms: list[Measured]) -> np.ndarray:
        chosen, _ = kept(ms)
        return (
            np.concatenate([m.run.latency_ms[m.run.ok & m.run.measured()] for m in chosen])
            if chosen
            else np.zeros(0)
        )

    raw1 = [w for w in results.raw[1] if not w.disturbed] or results.raw[1]
    c1 = {"raw onnxruntime, batch 1": np.concatenate([w.latencies_ms for w in raw1])}
    c1.update({f"gateway {p}": lat(ms) for p, ms in results.c1.items()})
    c1["gateway grpc, shipped config"] = lat(results.c1_shipped)
    figures = {"c1": plots.cdf(c1, out / "gateway_c1_cdf.png", title="Concurrency 1: MiniLM int8, 64 tokens")}
    c16 = {f"batching {c}": lat(ms) for c, ms in results.c16.items()}
    figures["c16"] = plots.cdf(
        c16, out / "gateway_c16_cdf.png", title="Concurrency 16, gRPC: batching on vs off"
    )
    if results.demo is not None:
        figures["timeline"] = plots.timeline(results.demo.run, out / "gateway_bursts_timeline.png")
    return figures
