"""Shared pieces of the benchmark sections: the repository they need, serving copies of it with edited
batching settings, the gateway under test, monitored load windows, medians and markdown.

A section that drives a gateway (this issue's ``gateway``, the policy comparison that comes later)
builds what it needs with ``ensure_variants``, serves a ``serving_copy`` through ``GatewayProcess``, and
measures with ``window`` (a load run inside ``loadtest.cpu.Monitor``, with the generator's and the
server's CPU). Windows disturbed by steal or other processes are dropped; medians of the rest are quoted.
"""

from __future__ import annotations

import datetime
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest import cpu
from loadtest.clients import Driver
from loadtest.cpu import Monitor, Window, process_cpu_s
from loadtest.engine import ClosedLoop, OpenLoop, Run, execute
from loadtest.metrics_check import CrossCheck, cross_check, delta, parse, scrape
from loadtest.report import Summary, summarize
from loadtest.server import ROOT
from varigate.contract.layout import (
    BUILD_REPORT_FILENAME,
    CONFIG_FILENAME,
    VERSION_DIR,
    model_file,
    model_name,
)


def today() -> str:
    """The date and the CPU of this run, for every section's "Command: ..." line."""
    return f"{datetime.date.today().isoformat()}, on {cpu.describe()}"


def ensure_variants(repository: Path, logical: str, variants: Sequence[str]) -> None:
    """Build ``<logical>.<variant>`` into ``repository`` with the compressor when any is missing (fp32 is
    always built with them). Minutes for MiniLM; skipped when present."""
    missing = [v for v in variants if not model_file(repository / model_name(logical, v)).is_file()]
    if not missing:
        return
    print(
        f"   building {logical} {missing} into {repository} (varigate compress; a few minutes)",
        file=sys.stderr,
        flush=True,
    )
    command = [sys.executable, "-m", "compressor", logical, "--out", str(repository), "--variants", *missing]
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    still = [v for v in missing if not model_file(repository / model_name(logical, v)).is_file()]
    if still:
        raise SystemExit(
            f"{logical} variants {still} were not built (failed their gate? see "
            f"{repository / BUILD_REPORT_FILENAME})"
        )


def serving_copy(
    source: Path, target: Path, models: Iterable[str], edit: Callable[[Any], None] | None = None
) -> Path:
    """A repository at ``target`` with only ``models`` from ``source``: config.pbtxt rewritten through
    Triton's schema after ``edit(config)``, variant cards copied, model files linked (not copied)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    if target.exists():
        shutil.rmtree(target)
    for name in models:
        src, dst = source / name, target / name
        config = text_format.Parse((src / CONFIG_FILENAME).read_text(), model_config_pb2.ModelConfig())
        if edit is not None:
            edit(config)
        (dst / VERSION_DIR).mkdir(parents=True)
        (dst / CONFIG_FILENAME).write_text(text_format.MessageToString(config))
        for extra in src.iterdir():
            if extra.is_file() and extra.name != CONFIG_FILENAME:
                shutil.copy2(extra, dst / extra.name)
        for f in (src / VERSION_DIR).iterdir():
            os.symlink(f.resolve(), dst / VERSION_DIR / f.name)
    return target


def queue_delay(us: int) -> Callable[[Any], None]:
    def edit(config: Any) -> None:
        config.dynamic_batching.max_queue_delay_microseconds = us

    return edit


def no_batching(config: Any) -> None:
    config.ClearField("dynamic_batching")


@dataclass(frozen=True, slots=True)
class Measured:
    """A load window: its summary, the run, the machine's state and the CPU of generator and server."""

    summary: Summary
    run: Run
    window: Window
    generator_cores: float
    server_cores: float
    check: CrossCheck | None = None
    mean_batch_rows: float | None = None  # from the server's nv_inference_count / nv_inference_exec_count

    @property
    def disturbed(self) -> bool:
        return self.window.disturbed()


async def window(
    driver: Driver,
    load: OpenLoop | ClosedLoop,
    server_pid: int | tuple[int, ...],
    *,
    warmup_s: float = 0.0,
    metrics_url: str | None = None,
    model: str = "",
    **options: Any,
) -> Measured:
    """One monitored load run; steal and 'other' CPU exclude this process and the server (``server_pid``:
    its process, or all of them: a Triton server and its backend stubs, MLServer and its workers). With
    ``metrics_url``, /metrics is read before and after: the cross-check and the mean executed batch."""
    servers = server_pid if isinstance(server_pid, tuple) else (server_pid,)
    before = scrape(metrics_url) if metrics_url else None
    server0 = process_cpu_s(servers)
    with Monitor((os.getpid(), *servers)) as mon:
        run = await execute(driver, load, warmup_s=warmup_s, server_pids=servers, **options)
    server = (process_cpu_s(servers) - server0) / max(mon.window.seconds, 1e-9)
    check, batch = None, None
    if before is not None and metrics_url:
        after = scrape(metrics_url)
        check = cross_check(before, after, run, model)
        execs = sum(delta(parse(before), parse(after), "nv_inference_exec_count", model).values())
        batch = check.server_rows / execs if execs else None
    return Measured(summarize(run), run, mon.window, run.cpu.cores, server, check, batch)


def kept(points: Sequence[Measured]) -> tuple[list[Measured], bool]:
    """The undisturbed windows; all of them (flagged) when every one was disturbed."""
    clean = [p for p in points if not p.disturbed]
    return (clean, False) if clean else (list(points), bool(points))


def median(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def md_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
