"""Overload: 3x the gateway's measured capacity, open loop, over HTTP (binary) and gRPC at once.

The target is the real repository's ``minilm.int8`` when ``<repository>/minilm.int8`` exists, else the tiny
test repository's ``tiny.fp32`` made slow (``tests.gateway.policy.slow:SlowBackend``: 40 ms + 10 ms a row,
batches of 4; the output says which). Capacity is measured first, closed loop. Then every request is sent at
its scheduled time with a deadline; it is either served (in time or late), refused early with 429 /
RESOURCE_EXHAUSTED (``overloaded``), or something else (counted as such: timeouts, resets). Reported:
answered, shed, served in time, p99 of served, refusal latency, gateway RSS and fds before/after.

``python -m loadtest.benchmarks --only overload`` (section) or ``python -m loadtest.benchmarks.overload
--seconds 60``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtest import arrivals
from loadtest.benchmarks import common
from loadtest.clients import make_driver
from loadtest.cpu import open_fds, rss_bytes
from loadtest.engine import ClosedLoop, OpenLoop, Run, execute
from loadtest.payloads import Payloads, sentences
from loadtest.server import ROOT, GatewayProcess
from varigate.contract.layout import model_file

COMMAND = "python -m loadtest.benchmarks --only overload"
PROTOCOLS = ("http-binary", "grpc")
TINY_QUEUE = 8


@dataclass(frozen=True, slots=True)
class Target:
    repository: Path
    model: str
    label: str
    args: tuple[str, ...]
    payloads: Payloads
    deadline_s: float
    concurrency: int  # closed-loop concurrency that keeps full batches queued
    extra: dict[str, Any] = field(default_factory=dict)


def target(repository: Path, scratch: Path) -> Target:
    """The real minilm.int8 when the repository has it, else the slow tiny fixture (needs the tests)."""
    if model_file(repository / "minilm.int8").is_file():
        return Target(
            common.serving_copy(repository, scratch / "repo", ["minilm.int8"]),
            "minilm.int8",
            f"real repository {repository}: minilm.int8, sentences of 64 tokens",
            ("--ort-intra-op-threads", "2", "--executor-workers", "1", "--shadow-fraction", "0"),
            sentences(256, seq_len=64),
            2.0,
            64,
        )
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.tinyrepo import VOCAB_SIZE, build_tiny_repository

    repo = build_tiny_repository(
        scratch / "repo",
        variants=("fp32",),
        classifier=False,
        max_batch_size=4,
        delays_ms=(("fp32", 40.0, 10.0),),
    )
    rng = np.random.default_rng(0)
    requests = tuple(
        {
            "input_ids": rng.integers(1, VOCAB_SIZE, (1, 8)).astype(np.int64),
            "attention_mask": np.ones((1, 8), np.int64),
        }
        for _ in range(64)
    )
    args = ("--backend", "tests.gateway.policy.slow:SlowBackend", "--default-max-queue-size", str(TINY_QUEUE))
    return Target(
        repo,
        "tiny.fp32",
        f"tiny repository (no {repository / 'minilm.int8'}): tiny.fp32 slowed to ~50 requests/s, "
        f"--default-max-queue-size {TINY_QUEUE}",
        (*args, "--shadow-fraction", "0"),
        Payloads(requests, ("embedding",), "tiny, 1 row x 8 tokens"),
        2.0,
        2 * TINY_QUEUE,
    )


async def capacity(gw: GatewayProcess, t: Target, seconds: float = 5.0) -> float:
    """Served requests/s over gRPC, closed loop (after a warm-up window)."""
    driver = make_driver("grpc", gw.grpc, t.model, t.payloads, timeout_s=30.0)
    try:
        await common.window(driver, ClosedLoop(4, 1.0), gw.pid)
        m = await common.window(driver, ClosedLoop(t.concurrency, seconds), gw.pid, warmup_s=1.0)
    finally:
        await driver.close()
    return m.summary.throughput_per_s


async def open_loop(gw: GatewayProcess, t: Target, rate: float, seconds: float, seed: int = 0) -> list[Run]:
    """``rate`` requests/s in all, half over each protocol, Poisson; every request with ``t.deadline_s``."""
    drivers = [
        make_driver(p, gw.url(p), t.model, t.payloads, timeout_s=t.deadline_s, connections=1024)
        for p in PROTOCOLS
    ]
    try:
        schedules = [
            arrivals.schedule(arrivals.poisson(rate / len(PROTOCOLS)), seconds, seed=seed + i)
            for i in range(len(PROTOCOLS))
        ]
        return list(
            await asyncio.gather(
                *(
                    execute(d, OpenLoop(s, 4096), drain_timeout_s=t.deadline_s + 5.0, server_pids=(gw.pid,))
                    for d, s in zip(drivers, schedules, strict=True)
                )
            )
        )
    finally:
        for d in drivers:
            await d.close()


def outcome(run: Run, deadline_s: float) -> dict[str, Any]:
    ok, shed = run.error == "", run.error == "overloaded"
    latency_ms = (run.done_s - run.scheduled_s) * 1000
    refusal_ms = (run.done_s - run.sent_s)[shed] * 1000
    other = ~ok & ~shed
    return {
        "sent": len(run.error),
        "served": int(ok.sum()),
        "served_in_time": int((ok & (latency_ms <= deadline_s * 1000)).sum()),
        "shed": int(shed.sum()),
        "other_errors": dict(zip(*np.unique(run.error[other].astype(str), return_counts=True), strict=True))
        if other.any()
        else {},
        "served_p50_ms": float(np.percentile(latency_ms[ok], 50)) if ok.any() else None,
        "served_p99_ms": float(np.percentile(latency_ms[ok], 99)) if ok.any() else None,
        "refusal_p50_ms": float(np.percentile(refusal_ms, 50)) if shed.any() else None,
        "refusal_p99_ms": float(np.percentile(refusal_ms, 99)) if shed.any() else None,
        "other_cores": run.cpu.other_cores,
        "steal": run.cpu.steal_fraction,
    }


async def _measure(
    t: Target, scratch: Path, seconds: float
) -> tuple[float, list[dict[str, Any]], dict[str, float]]:
    with GatewayProcess(t.repository, scratch / "gateway.log", t.args) as gw:
        cap = await capacity(gw, t)
        rss0, fds0 = rss_bytes(gw.pid), open_fds(gw.pid)
        runs = await open_loop(gw, t, 3.0 * cap, seconds)
        state = {
            "rss0_mb": rss0 / 2**20,
            "rss1_mb": rss_bytes(gw.pid) / 2**20,
            "fds0": fds0,
            "fds1": open_fds(gw.pid),
        }
    return cap, [outcome(r, t.deadline_s) for r in runs], state


def render(t: Target, seconds: float, cap: float, rows: list[dict[str, Any]], state: dict[str, float]) -> str:
    f = common.fmt
    table = common.md_table(
        [
            "protocol",
            "sent",
            "answered",
            "shed (429/RESOURCE_EXHAUSTED)",
            "served in time",
            "served p50 / p99 ms",
            "refusal p50 / p99 ms",
            "other errors",
            "other CPU cores",
        ],
        [
            [
                p,
                str(r["sent"]),
                str(r["served"] + r["shed"] + sum(r["other_errors"].values())),
                str(r["shed"]),
                str(r["served_in_time"]),
                f"{f(r['served_p50_ms'], '.0f')} / {f(r['served_p99_ms'], '.0f')}",
                f"{f(r['refusal_p50_ms'])} / {f(r['refusal_p99_ms'])}",
                str(r["other_errors"] or "none"),
                f"{r['other_cores']:.2f}",
            ]
            for p, r in zip(PROTOCOLS, rows, strict=True)
        ],
    )
    goodput = sum(r["served_in_time"] for r in rows) / seconds
    intro = (
        f"Command: `{COMMAND}`, {common.today()}. Target: {t.label}. Capacity (closed loop, gRPC, "
        f"concurrency {t.concurrency}): {cap:.1f} requests/s; offered {3 * cap:.1f}/s for {seconds:.0f} s, "
        f"half over each protocol, Poisson, each request with a {t.deadline_s:.0f} s deadline."
    )
    after = (
        f"Goodput (served in time, both protocols): {goodput:.1f}/s = {goodput / cap:.0%} of capacity. "
        f"Gateway RSS {state['rss0_mb']:.0f} -> {state['rss1_mb']:.0f} MB, open fds {state['fds0']:.0f} -> "
        f"{state['fds1']:.0f}."
    )
    return f"## Overload: 3x capacity, open loop\n\n{intro}\n\n{table}\n\n{after}\n"


def run(args: argparse.Namespace) -> str:
    seconds = float(getattr(args, "seconds", 60.0))
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        t = target(args.repository, Path(tmp))
        print(f"   {t.label}", file=sys.stderr, flush=True)
        cap, rows, state = asyncio.run(_measure(t, Path(tmp), seconds))
    return render(t, seconds, cap, rows, state)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.benchmarks.overload", description=__doc__)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--seconds", type=float, default=60.0, help="length of the 3x-capacity run")
    print(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
