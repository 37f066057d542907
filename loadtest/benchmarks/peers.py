"""varigate against its peers, side by side in one run: raw onnxruntime in-process (the limit), varigate as
``varigate serve`` starts it and with each other layout, a real Triton server and MLServer.

Every server serves MiniLM int8 and fp32 (sequence length 64) from the same repository: varigate as the
compressor wrote it; Triton its Python-backend form (``varigate triton-repo``: the same config.pbtxt
batching, one instance of onnxruntime with an intra-op thread per core, as the raw session); MLServer a
small custom runtime over the same ``model.onnx`` with its adaptive batching set from config.pbtxt
(``max_batch_size``, ``max_queue_delay`` as ``max_batch_time``), default workers. All run at once on
loopback; the same load generator (this toolkit's closed loop, tritonclient asyncio clients) drives one at a
time. Every round runs every point once in a shuffled order; windows disturbed by steal or other processes
are dropped and medians of the rest quoted. Last, py-spy samples varigate's default gateway under load, for
where its time goes (``peers_profile.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from loadtest import payloads
from loadtest.benchmarks import common
from loadtest.benchmarks.common import Measured
from loadtest.benchmarks.peers_data import LOGICAL, MLSERVER_HTTP, Point, Results, Setup
from loadtest.benchmarks.peers_profile import Profile, profile
from loadtest.benchmarks.peers_report import render
from loadtest.benchmarks.raw import RawModel, RawWindow
from loadtest.clients import Driver, make_driver
from loadtest.cpu import descendants
from loadtest.engine import ClosedLoop
from loadtest.peers import mlserver, triton
from loadtest.server import GatewayProcess
from varigate.contract.layout import model_file
from varigate.triton_repo import write_python_backend_repo

COMMAND = "python -m loadtest.benchmarks --only peers"
SEQ_LEN = 64
VARIANTS = ("int8", "fp32")
PROTOCOLS = ("grpc", "http-binary")
CONCURRENCY = (1, 4, 16, 32, 64)
RAW_BATCHES = (1, 4, 8, 16, 32)
LAYOUTS = ("wide", "split")  # beside the default, on int8 over gRPC at LAYOUT_CONCURRENCY
LAYOUT_CONCURRENCY = (1, 16, 32)
C1_WINDOW_S, LOAD_WINDOW_S, RAW_WINDOW_S, WARMUP_S = 2.0, 3.0, 1.5, 0.5


def points() -> list[Point]:
    main = [
        Point(s, v, p, c)
        for s in ("varigate", "triton", "mlserver")
        for v in VARIANTS
        for p in PROTOCOLS
        for c in CONCURRENCY
    ]
    return main + [
        Point(f"varigate --layout {lay}", "int8", "grpc", c) for lay in LAYOUTS for c in LAYOUT_CONCURRENCY
    ]


@dataclass(slots=True)
class Server:
    """One running system: where to send, whose CPU to count, where its Triton-style metrics are."""

    url: dict[str, str]  # by wire protocol
    pid: int
    metrics_url: str | None  # nv_inference_* (varigate, Triton); None for MLServer
    description: str

    def pids(self) -> tuple[int, ...]:
        return (self.pid, *descendants(self.pid))


def _start(stack: ExitStack, repo: Path, tmp: Path, cores: int) -> dict[str, Server]:
    models = [f"{LOGICAL}.{v}" for v in VARIANTS]
    served = common.serving_copy(repo, tmp / "varigate", models)
    servers: dict[str, Server] = {}
    for system, args in [("varigate", ()), *[(f"varigate --layout {x}", ("--layout", x)) for x in LAYOUTS]]:
        gw = stack.enter_context(GatewayProcess(served, tmp / f"{system.replace(' ', '_')}.log", args))
        urls = {p: gw.url(p) for p in ("grpc", "http-binary")}
        servers[system] = Server(urls, gw.pid, gw.metrics_url, f"`{' '.join(['varigate serve', *args])}`")
    install = triton.ensure_installed()
    tri_repo = tmp / "triton"
    write_python_backend_repo(repo, tri_repo, models, intra_op_threads=cores, spinning=True, instances=1)
    t = stack.enter_context(triton.TritonServer(install, tri_repo, tmp / "triton.log"))
    servers["triton"] = Server(
        {"grpc": t.grpc_url, "http-binary": t.http_url},
        t.pid,
        t.metrics_url,
        f"tritonserver 2.51 (PyPI nvidia-pytriton 0.7.0), Python backend, 1 instance x {cores} intra-op "
        "threads, spinning on (onnxruntime's default), config.pbtxt's dynamic batching",
    )
    venv = mlserver.ensure_installed()
    found = sorted(venv.glob("lib/python3.*/site-packages/mlserver-*.dist-info"))
    version = found[0].name.removeprefix("mlserver-").removesuffix(".dist-info") if found else "?"
    m = stack.enter_context(
        mlserver.MLServerProcess(
            repo, models, tmp / "mlserver", intra_op_threads=cores, allow_spinning=True, venv=venv
        )
    )
    servers["mlserver"] = Server(
        {"grpc": m.grpc_url, MLSERVER_HTTP: m.http_url},
        m.pid,
        None,
        f"MLServer {version}, default workers, adaptive batching from config.pbtxt, {cores} "
        "intra-op threads, spinning on",
    )
    return servers


async def _measure(
    servers: dict[str, Server], load: payloads.Payloads, raws: dict[str, RawModel], rounds: int
) -> tuple[dict[Point, list[Measured]], dict[tuple[str, int], list[RawWindow]], list[Profile]]:
    grid = points()
    drivers: dict[tuple[str, str, str], Driver] = {}
    for pt in grid:
        key = (pt.system, pt.model, pt.wire)
        if key not in drivers:
            drivers[key] = make_driver(
                pt.wire, servers[pt.system].url[pt.wire], pt.model, load, timeout_s=120.0
            )
    measured: dict[Point, list[Measured]] = {p: [] for p in grid}
    raw: dict[tuple[str, int], list[RawWindow]] = {(v, b): [] for v in VARIANTS for b in RAW_BATCHES}
    try:
        for (system, _, _), driver in drivers.items():  # connections up, sessions warm
            await common.window(driver, ClosedLoop(4, 1.0), servers[system].pid)
        shuffle = random.Random(0)
        for r in range(rounds):
            print(f"   round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            for v, b in shuffle.sample(list(raw), len(raw)):
                raw[(v, b)].append(raws[v].window(b, RAW_WINDOW_S))
            for pt in shuffle.sample(grid, len(grid)):
                measured[pt].append(
                    await _window(servers[pt.system], drivers[(pt.system, pt.model, pt.wire)], pt)
                )
        profiles = [
            await profile(
                f"minilm.int8 over gRPC, concurrency {pt.concurrency}",
                servers["varigate"].pid,
                _window(servers["varigate"], drivers[key], pt, seconds=10.0),
            )
            for pt in (Point("varigate", "int8", "grpc", 1), Point("varigate", "int8", "grpc", 32))
            for key in [(pt.system, pt.model, pt.wire)]
        ]
    finally:
        for driver in drivers.values():
            await driver.close()
    return measured, raw, profiles


async def _window(server: Server, driver: Driver, pt: Point, seconds: float | None = None) -> Measured:
    loaded = pt.concurrency > 1
    secs = seconds or (LOAD_WINDOW_S if loaded else C1_WINDOW_S)
    warm = WARMUP_S if loaded else 0.0
    return await common.window(
        driver,
        ClosedLoop(pt.concurrency, secs + warm),
        server.pids(),
        warmup_s=warm,
        metrics_url=server.metrics_url,
        model=pt.model if server.metrics_url else "",
    )


def run(args: argparse.Namespace) -> str:
    repo: Path = args.repository
    common.ensure_variants(repo, LOGICAL, list(VARIANTS))
    load = payloads.sentences(256, seq_len=SEQ_LEN)
    cores = len(os.sched_getaffinity(0))
    raws = {v: RawModel(model_file(repo / f"{LOGICAL}.{v}"), load, RAW_BATCHES) for v in VARIANTS}
    rounds = min(args.rounds, 3)
    with tempfile.TemporaryDirectory(prefix="varigate-peers-") as tmp, ExitStack() as stack:
        servers = _start(stack, repo, Path(tmp), cores)
        measured, raw, profiles = asyncio.run(_measure(servers, load, raws, rounds))
        descriptions = {name: s.description for name, s in servers.items()}
    setup = Setup(
        command=COMMAND,
        date=common.today(),
        rounds=rounds,
        payload=load.description,
        cores=cores,
        systems=descriptions,
        windows_s=(RAW_WINDOW_S, C1_WINDOW_S, LOAD_WINDOW_S, WARMUP_S),
    )
    return render(Results(measured, raw, profiles), setup)
