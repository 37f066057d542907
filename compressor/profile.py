"""Latency profile of one ONNX model with onnxruntime: p50/p99 and throughput per batch size.

The machine is shared: CPU steal and other processes' load are read from /proc/stat during each batch
size and recorded beside the numbers, so a disturbed profile can be recognised (and re-run).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from compressor import progress
from compressor.config import ProfileConfig
from compressor.evaluate import session
from varigate.contract import execution
from varigate.contract.card import BatchProfile

Feeds = dict[str, np.ndarray]


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat; (0, 0) where unavailable."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def batch_sizes(max_batch: int, requested: Sequence[int] | None) -> list[int]:
    if requested:
        bad = [b for b in requested if b < 1 or b > max_batch]
        if bad:
            raise ValueError(f"profile batch sizes {bad} outside 1..{max_batch}")
        return sorted(set(requested))
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return [*sizes, max_batch]


def time_runs(run: Callable[[], Any], warmup: int, min_iterations: int, max_seconds: float) -> list[float]:
    for _ in range(warmup):
        run()
    times: list[float] = []
    deadline = time.monotonic() + max_seconds
    while len(times) < min_iterations or time.monotonic() < deadline:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_iterations and time.monotonic() >= deadline:
            break
        if len(times) >= 2000:
            break
    return times


def profile(
    path: Path,
    feeds_for: Callable[[int], Feeds],
    max_batch: int,
    config: ProfileConfig,
    name: str | None = None,
) -> tuple[list[BatchProfile], dict[str, Any]]:
    """Latency per batch size; a progress task ``profile <name>`` (default: the file's stem) shows it."""
    layout = execution.choose(intra_op_threads=config.intra_op_threads)
    sess = session(path, layout.intra_op_threads, spinning=layout.spinning)
    points: list[BatchProfile] = []
    sizes = batch_sizes(max_batch, config.batch_sizes)
    steal0, total0 = cpu_times()
    with progress.task(f"profile {name or path.stem}", len(sizes), unit="bs") as shown:
        for bs in sizes:
            feeds = feeds_for(bs)
            times = time_runs(
                partial(sess.run, None, feeds),
                config.warmup,
                config.min_iterations,
                config.max_seconds_per_batch,
            )
            ms = np.asarray(times) * 1000.0
            points.append(
                BatchProfile(
                    batch_size=bs,
                    p50_ms=float(np.percentile(ms, 50)),
                    p99_ms=float(np.percentile(ms, 99)),
                    throughput_per_s=float(bs * len(times) / np.sum(times)),
                    samples=len(times),
                )
            )
            shown.update(bs=bs, p50_ms=points[-1].p50_ms)
    steal1, total1 = cpu_times()
    conditions = {
        "intra_op_threads": layout.intra_op_threads,
        "spinning": layout.spinning,
        "layout": layout.name,
        "cpu_steal_fraction": (steal1 - steal0) / (total1 - total0) if total1 > total0 else None,
    }
    return points, conditions
