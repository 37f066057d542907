"""Plots are written as real, non-empty PNG images, also for runs with errors or nothing at all."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np

from loadtest import arrivals, plots
from loadtest.clients import make_driver
from loadtest.engine import GeneratorCpu, OpenLoop, Run, execute
from loadtest.server import GatewayProcess
from tests.loadtest.conftest import tiny_payloads

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500
    assert pixels[..., :3].std() > 0.05  # something is drawn, not a blank canvas


async def test_timeline_and_cdf_of_a_real_run(tiny_gateway: GatewayProcess, tmp_path: Path) -> None:
    driver = make_driver("grpc", tiny_gateway.grpc, "tiny", tiny_payloads(), timeout_s=10)
    schedule = arrivals.schedule(arrivals.step(50, 150, 0.4), 0.8, seed=2, slo_ms=20)
    try:
        run = await execute(driver, OpenLoop(schedule), slo_ms=20)
    finally:
        await driver.close()
    _assert_png(plots.timeline(run, tmp_path / "timeline.png"))
    _assert_png(
        plots.cdf(
            {"grpc": run.latency_ms[run.ok], "again": run.latency_ms[run.ok] * 2},
            tmp_path / "cdf.png",
            slo_ms=20,
        )
    )


def test_plots_of_failed_and_empty_runs(tmp_path: Path) -> None:
    n = 30
    t = np.linspace(0, 1, n)
    failed = Run(
        "open",
        "everything failed",
        t,
        t,
        t + 0.01,
        np.full(n, "overloaded", dtype=object),
        np.full(n, "", dtype=object),
        np.full(n, np.nan),
        np.ones(n, np.int64),
        GeneratorCpu(1.0, 0.1, 0.0, 0.0, 0.0),
    )
    _assert_png(plots.timeline(failed, tmp_path / "failed.png"))
    empty = Run(
        "open",
        "nothing",
        np.zeros(0),
        np.zeros(0),
        np.zeros(0),
        np.zeros(0, object),
        np.zeros(0, object),
        np.zeros(0),
        np.zeros(0, np.int64),
        GeneratorCpu(0.0, 0.0, 0.0, 0.0, 0.0),
    )
    assert plots.timeline(empty, tmp_path / "empty.png").stat().st_size > 0
    assert plots.cdf({"none": np.zeros(0)}, tmp_path / "empty_cdf.png").stat().st_size > 0
