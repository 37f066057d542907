"""The gateway in front of real Triton servers (issue 14's scale-out), side by side in one run:

(a) the cost of the gateway hop: the same load (this toolkit's closed loop over gRPC, concurrency 1, 16,
    32) sent to one Triton server directly, and through ``varigate serve --placement remote
    --triton-servers`` that server, once with the repository's batching settings and once with the
    gateway's ``max_queue_delay`` set to 0 (so a batching window is waited once, at Triton, not twice);
(b) the gateway with one Triton server against the gateway with two, concurrency 16 and 32.

Every Triton server serves the Python-backend form of MiniLM int8 (sequence length 64,
``varigate.triton_repo.write_python_backend_repo``) with one instance of one intra-op thread and the
repository's dynamic batching; all servers and gateways run at once on loopback. Every round runs every
point once in a shuffled order; each window records the CPU of every process of the section (a Triton
with its Python-backend stubs); windows disturbed by steal or by processes outside the section are dropped
and medians of the rest quoted (``fleet_report.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from loadtest import payloads
from loadtest.benchmarks import common
from loadtest.benchmarks.fleet_data import (
    DIRECT,
    GATEWAY,
    GATEWAY_NO_DELAY,
    GATEWAY_TWO,
    MODEL,
    FleetWindow,
    Point,
    Results,
    Setup,
    points,
)
from loadtest.benchmarks.fleet_report import render
from loadtest.clients import Driver, make_driver
from loadtest.cpu import descendants, process_cpu_s
from loadtest.engine import ClosedLoop
from loadtest.peers import triton
from loadtest.server import GatewayProcess
from varigate.triton_repo import write_python_backend_repo

COMMAND = "python -m loadtest.benchmarks --only fleet"
SEQ_LEN = 64
TRITON_THREADS = 1  # intra-op threads of each Triton server's one instance
MAX_ROUNDS = 7  # about 65 s a round: 7 rounds are about 8.5 minutes with the start-up
WINDOWS_S = (3.0, 5.0, 2.0)  # concurrency 1, loaded, warm-up before a loaded window (fills the queues)
QUICK_WINDOWS_S = (1.0, 2.0, 1.0)
# the same for every gateway: batches only on the Triton servers, two in flight per server (the default,
# said here so the table can quote it), no shadow comparisons, and no queue timeout (Triton's config has
# none: a gateway that refused what Triton queues would not carry the same load)
GATEWAY_FLAGS = (
    *("--placement", "remote", "--triton-protocol", "grpc", "--triton-slots-per-server", "2"),
    *("--shadow-fraction", "0", "--default-queue-timeout-ms", "0"),
)


class Processes:
    """The section's servers by name, and where each system under test sends its load."""

    def __init__(self) -> None:
        self.pids: dict[str, tuple[int, ...]] = {}  # name -> the process and its descendants
        self.url: dict[str, str] = {}  # system -> gRPC address
        self.metrics: dict[str, str] = {}  # system -> /metrics of the server the client talks to
        self.uses: dict[str, tuple[str, ...]] = {}  # system -> the processes it runs on
        self.flags: dict[str, str] = {}

    def all_pids(self) -> tuple[int, ...]:
        return tuple(p for ps in self.pids.values() for p in ps)


def _start(stack: ExitStack, repo: Path, tmp: Path) -> Processes:
    install = triton.ensure_installed()
    procs = Processes()
    tritons = []
    for i in (1, 2):
        tri_repo = tmp / f"triton{i}"
        write_python_backend_repo(
            repo, tri_repo, [MODEL], intra_op_threads=TRITON_THREADS, spinning=False, instances=1
        )
        t = stack.enter_context(triton.TritonServer(install, tri_repo, tmp / f"triton{i}.log"))
        procs.pids[f"triton {i}"] = (t.pid, *descendants(t.pid))  # its Python-backend stubs
        tritons.append(t)
    procs.url[DIRECT], procs.metrics[DIRECT] = tritons[0].grpc_url, tritons[0].metrics_url
    procs.uses[DIRECT] = ("triton 1",)
    served = common.serving_copy(repo, tmp / "served", [MODEL])
    no_delay = common.serving_copy(repo, tmp / "served-no-delay", [MODEL], common.queue_delay(0))
    for system, source, servers in (
        (GATEWAY, served, tritons[:1]),
        (GATEWAY_NO_DELAY, no_delay, tritons[:1]),
        (GATEWAY_TWO, served, tritons),
    ):
        args = ("--triton-servers", ",".join(t.grpc_url for t in servers), *GATEWAY_FLAGS)
        log = tmp / f"{system.replace(' ', '_').replace(',', '')}.log"
        gw = stack.enter_context(GatewayProcess(source, log, args))
        procs.pids[system] = (gw.pid,)
        procs.url[system], procs.metrics[system] = gw.grpc, gw.metrics_url
        procs.uses[system] = (system, *(f"triton {i + 1}" for i in range(len(servers))))
        shown = " ".join(["varigate serve", *args]).replace(
            ",".join(t.grpc_url for t in servers), ",".join(f"TRITON_{i + 1}" for i in range(len(servers)))
        )
        edit = ", its repository's max_queue_delay_microseconds 0" if source is no_delay else ""
        procs.flags[system] = f"`{shown}`{edit}"
    return procs


async def _window(
    procs: Processes, driver: Driver, pt: Point, windows_s: tuple[float, float, float]
) -> FleetWindow:
    c1_s, load_s, warm_s = windows_s
    warm = warm_s if pt.concurrency > 1 else 0.0
    before = {name: process_cpu_s(pids) for name, pids in procs.pids.items()}
    t0 = time.monotonic()
    measured = await common.window(
        driver,
        ClosedLoop(pt.concurrency, (load_s if pt.concurrency > 1 else c1_s) + warm),
        procs.all_pids(),  # every process of the section is ours: "other" CPU is the rest of the machine
        warmup_s=warm,
        metrics_url=procs.metrics[pt.system],
        model=MODEL,
    )
    dt = max(time.monotonic() - t0, 1e-9)
    cores = {name: (process_cpu_s(pids) - before[name]) / dt for name, pids in procs.pids.items()}
    return FleetWindow(measured, cores)


async def _measure(
    procs: Processes, load: payloads.Payloads, rounds: int, windows_s: tuple[float, float, float]
) -> dict[Point, list[FleetWindow]]:
    grid = points()
    drivers = {s: make_driver("grpc", procs.url[s], MODEL, load, timeout_s=120.0) for s in procs.url}
    measured: dict[Point, list[FleetWindow]] = {p: [] for p in grid}
    try:
        for driver in drivers.values():  # connections up, sessions warm, gateways' latency models fed
            await common.window(driver, ClosedLoop(4, 1.0), procs.all_pids())
        shuffle = random.Random(0)
        for r in range(rounds):
            print(f"   round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            for pt in shuffle.sample(grid, len(grid)):
                measured[pt].append(await _window(procs, drivers[pt.system], pt, windows_s))
    finally:
        for driver in drivers.values():
            await driver.close()
    return measured


def run(args: argparse.Namespace) -> str:
    repo: Path = args.repository
    quick = bool(getattr(args, "fleet_quick", False))
    common.ensure_variants(repo, "minilm", ["int8"])
    load = payloads.sentences(256, seq_len=SEQ_LEN)
    rounds = 1 if quick else max(1, min(args.rounds, MAX_ROUNDS))
    windows_s = QUICK_WINDOWS_S if quick else WINDOWS_S
    with tempfile.TemporaryDirectory(prefix="varigate-fleet-") as tmp, ExitStack() as stack:
        procs = _start(stack, repo, Path(tmp))
        measured = asyncio.run(_measure(procs, load, rounds, windows_s))
    setup = Setup(
        command=COMMAND + (" --fleet-quick" if quick else ""),
        date=common.today(),
        quick=quick,
        rounds=rounds,
        payload=load.description,
        cores=len(os.sched_getaffinity(0)),
        triton=f"tritonserver 2.51 (PyPI nvidia-pytriton 0.7.0), Python backend, 1 instance x "
        f"{TRITON_THREADS} intra-op thread (spinning off), the repository's dynamic batching",
        triton_threads=TRITON_THREADS,
        gateways=procs.flags,
        uses=procs.uses,
        windows_s=windows_s,
    )
    return render(Results(measured), setup)
