"""One load test end to end: model metadata -> payloads -> /metrics before -> load -> /metrics after ->
summary, cross-check, files (``summary.json``, ``summary.csv``, ``requests.csv``, ``timeline.png``,
``cdf.png``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtest import payloads as payload_kinds
from loadtest import plots
from loadtest.clients import Protocol, make_driver
from loadtest.config import LoadTestConfig
from loadtest.engine import OpenLoop, Run, execute
from loadtest.metrics_check import CrossCheck, cross_check, scrape
from loadtest.payloads import Payloads
from loadtest.progress import Progress
from loadtest.report import Summary, summarize, write_json, write_requests_csv, write_summary_csv


@dataclass(frozen=True, slots=True)
class Outcome:
    run: Run
    summary: Summary
    cross_check: CrossCheck | None
    files: tuple[Path, ...]


async def model_inputs(
    protocol: Protocol, url: str, model: str, version: str = ""
) -> list[tuple[str, str, list[int]]]:
    """(name, datatype, dims without the batch dimension) of each input, from the server's metadata."""
    if protocol.is_http:
        import tritonclient.http.aio as http_aio

        async with http_aio.InferenceServerClient(url) as client:
            meta: dict[str, Any] = await client.get_model_metadata(model, version)
            config: dict[str, Any] = await client.get_model_config(model, version)
    else:
        import tritonclient.grpc.aio as grpc_aio

        async with grpc_aio.InferenceServerClient(url) as client:
            meta = await client.get_model_metadata(model, version, as_json=True)
            config = (await client.get_model_config(model, version, as_json=True)).get("config", {})
    batched = int(config.get("max_batch_size", 0) or 0) > 0
    return [
        (i["name"], i["datatype"], [int(d) for d in i["shape"]][1 if batched else 0 :])
        for i in meta.get("inputs", [])
    ]


async def build_payloads(cfg: LoadTestConfig) -> Payloads:
    inputs: list[tuple[str, str, list[int]]] = []
    if cfg.data in ("auto", "random"):
        inputs = await model_inputs(cfg.protocol, cfg.url, cfg.model, cfg.model_version)
    return payload_kinds.for_model(
        inputs,
        cfg.data,
        count=cfg.payloads,
        batch=cfg.batch,
        seq_len=cfg.seq_len,
        path=cfg.data_file,
        outputs=cfg.outputs,
    )


async def run_load_test(cfg: LoadTestConfig, payloads: Payloads | None = None) -> Outcome:
    payloads = payloads or await build_payloads(cfg)
    load = cfg.load()
    before = await asyncio.to_thread(_scrape, cfg.metrics_url)
    driver = make_driver(
        cfg.protocol,
        cfg.url,
        cfg.model,
        payloads,
        timeout_s=cfg.timeout_s,
        version=cfg.model_version,
        connections=min(cfg.max_inflight, 1024),
    )
    total = len(load.schedule) if isinstance(load, OpenLoop) else cfg.max_requests
    progress = Progress(total, label=f"[{cfg.protocol}] ") if cfg.progress else None
    try:
        run = await execute(
            driver,
            load,
            parameters=cfg.request_parameters(),
            slo_ms=cfg.slo_ms,
            send_slo=cfg.send_slo,
            warmup_s=cfg.warmup_s,
            drain_timeout_s=cfg.timeout_s,
            progress=progress,
            server_pids=cfg.server_pids,
            description=cfg.describe(),
        )
    finally:
        await driver.close()
    after = await asyncio.to_thread(_scrape, cfg.metrics_url)
    check = cross_check(before, after, run, cfg.model) if before is not None and after is not None else None
    extra: dict[str, Any] = {
        "payloads": payloads.description,
        "protocol": str(cfg.protocol),
        "model": cfg.model,
    }
    if cfg.metrics_url and check is None:
        extra["metrics_check"] = f"skipped: {cfg.metrics_url} could not be read"
    elif check is not None:
        extra["metrics_check"] = check.to_dict()
    summary = summarize(run, extra)
    files = (
        write_outputs(cfg.out, run, summary, cfg.model_dump(mode="json"), plots_too=cfg.plots)
        if cfg.out
        else ()
    )
    return Outcome(run, summary, check, files)


def write_outputs(
    out: Path, run: Run, summary: Summary, config: dict[str, Any], *, plots_too: bool = True
) -> tuple[Path, ...]:
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "summary.json", out / "summary.csv", out / "requests.csv"]
    write_json(files[0], summary, config)
    write_summary_csv(files[1], [summary])
    write_requests_csv(files[2], run)
    if plots_too:
        files.append(plots.timeline(run, out / "timeline.png"))
        ok = run.ok & run.measured()
        slo = run.slo_ms[~np.isnan(run.slo_ms)]
        files.append(
            plots.cdf(
                {summary.description: run.latency_ms[ok]},
                out / "cdf.png",
                slo_ms=float(slo[0]) if len(slo) else None,
            )
        )
    return tuple(files)


def _scrape(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return scrape(url)
    except OSError:
        return None


def run_sync(cfg: LoadTestConfig) -> Outcome:
    return asyncio.run(run_load_test(cfg))


def dumps(outcome: Outcome) -> str:
    return json.dumps(outcome.summary.to_dict(), indent=2, default=str)
