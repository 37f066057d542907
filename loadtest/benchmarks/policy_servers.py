"""The policy section's servers: the gateways (one per flag set; one that refuses its flags is left out with
a note), the Triton peer, the wait for them to fall quiet between runs, and what varigate's /metrics says at
the end."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from loadtest.benchmarks import common
from loadtest.benchmarks.peers import Server
from loadtest.benchmarks.policy_plan import GATEWAY_ARGS, OURS, TRITON_VARIANTS
from loadtest.cpu import process_cpu_s
from loadtest.metrics_check import parse, scrape
from loadtest.peers import triton
from loadtest.server import GatewayProcess
from varigate.contract.layout import model_name
from varigate.triton_repo import TritonRepoError, write_python_backend_repo

PROTOCOL = "grpc"
QUIET_CORES, QUIET_MAX_S, QUIET_POLL_S = 0.1, 8.0, 0.2


def start_servers(
    stack: ExitStack,
    repo: Path,
    tmp: Path,
    logical: str,
    variants: list[str],
    with_triton: bool,
    gateway_args: Mapping[str, Sequence[str]] = GATEWAY_ARGS,
) -> tuple[dict[str, Server], list[str]]:
    """The section's servers, and a note for each one left out (a gateway other than varigate's and the
    baseline's that refuses its flags, a Triton that cannot be installed or started)."""
    models = [model_name(logical, v) for v in variants]
    served = common.serving_copy(repo, tmp / "repo", models)
    servers: dict[str, Server] = {}
    notes: list[str] = []
    for name, args in gateway_args.items():
        try:
            gw = stack.enter_context(GatewayProcess(served, tmp / f"{name}.log", args))
        except RuntimeError as e:
            if name == OURS or name == "baseline":
                raise
            last = [ln for ln in str(e).splitlines() if ln.strip()][-1:] or ["?"]
            notes.append(
                f"`{' '.join(args)}` was refused by the gateway, so {name} is not run: {last[0][:200]}"
            )
            continue
        servers[name] = Server(
            {PROTOCOL: gw.grpc}, gw.pid, gw.metrics_url, f"`varigate serve {' '.join(args)}`"
        )
    if not with_triton:
        notes.append("Triton was not run (--no-triton).")
        return servers, notes
    try:
        install = triton.ensure_installed()
        names = [model_name(logical, v) for v in TRITON_VARIANTS if v in variants]
        cores = len(os.sched_getaffinity(0))
        write_python_backend_repo(
            repo, tmp / "triton", names, intra_op_threads=cores, spinning=True, instances=1
        )
        t = stack.enter_context(triton.TritonServer(install, tmp / "triton", tmp / "triton.log"))
    except (triton.TritonPeerError, TritonRepoError) as e:
        notes.append(f"Triton is not run: {str(e).splitlines()[0][:200]}")
        return servers, notes
    servers["triton"] = Server(
        {PROTOCOL: t.grpc_url},
        t.pid,
        t.metrics_url,
        f"tritonserver 2.51, Python backend, 1 instance x {cores} intra-op threads, config.pbtxt batching",
    )
    return servers, notes


async def settle(pids: tuple[int, ...]) -> float:
    """Wait until the servers' CPU falls under ``QUIET_CORES`` (queues drained); the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < QUIET_MAX_S:
        before = process_cpu_s(pids)
        await asyncio.sleep(QUIET_POLL_S)  # a polling interval, not a guess at readiness
        if (process_cpu_s(pids) - before) / QUIET_POLL_S < QUIET_CORES:
            break
    return time.monotonic() - start


def gateway_state(metrics_url: str) -> dict[str, list[str]]:
    """What the varigate gateway's /metrics says at the end: dominated and demoted variants, switches."""
    try:
        samples = parse(scrape(metrics_url))
    except OSError as e:  # the section's rows stand without it
        return {"dominated": [f"(unread: {e})"], "demoted": [], "switches": []}
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
