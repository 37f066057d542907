"""The execution layout: how the cores this process may use are split between onnxruntime's threads.
It is part of the contract because both sides use it: the gateway serves with it, and the compressor
profiles every variant's latency at it, so that the cards describe the layout the scheduler runs on.

One compute pool per process: every batch of every variant runs on the backend's one executor, whose
``workers`` x ``intra_op_threads`` never exceed the cores, so several loaded variants share the machine
without oversubscribing it. ``instances`` is how many batches of one variant may run at once (Triton's
``instance_group`` count, for a config.pbtxt that declares none): with ``instances == workers`` one hot
variant can fill the whole pool.

``choose`` picks the layout from the cores; any setting given explicitly (``--ort-intra-op-threads``,
``--executor-workers``, ``--ort-allow-spinning``) wins, and a config.pbtxt's own ``instance_group`` wins over
``instances``. The rule, and why it is the default, is measured: docs/BENCHMARKS.md, section ``layouts``
(``python -m loadtest.benchmarks --only layouts``) runs every candidate below side by side.

- ``pool`` (the default): one batch at a time on all cores (``intra_op_threads = cores``, one worker, one
  instance), onnxruntime's spin-waiting off. A lone request gets every core; requests that arrive while a
  batch runs gather into the next one, so the pool never waits on a half-full second batch; with spinning
  off the event loop's protocol work is not starved by threads that spin between operators.
- ``pool-spin``: the same with spinning on (onnxruntime's own default).
- ``split``: one core per batch (one intra-op thread, ``workers = instances = cores``): batches of one
  variant run side by side, each on its own core.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass
from typing import Literal

LayoutName = Literal["pool", "pool-spin", "split"]
DEFAULT_LAYOUT: LayoutName = "pool"
LAYOUTS: tuple[str, ...] = typing.get_args(LayoutName)


@dataclass(frozen=True, slots=True)
class Layout:
    """What the backend serves with; ``describe()`` is logged at start and written into benchmark rows."""

    name: str
    cores: int
    intra_op_threads: int
    executor_workers: int
    instances: int  # batches of one variant in flight, where config.pbtxt declares no instance_group
    spinning: bool

    def describe(self) -> str:
        return (
            f"layout {self.name}: {self.executor_workers} worker(s) x {self.intra_op_threads} intra-op "
            f"thread(s) on {self.cores} core(s), {self.instances} instance(s) per variant, spinning "
            f"{'on' if self.spinning else 'off'}"
        )


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def choose(
    name: str = DEFAULT_LAYOUT,
    *,
    cores: int | None = None,
    intra_op_threads: int = 0,
    executor_workers: int = 0,
    spinning: bool | None = None,
) -> Layout:
    """The layout ``name`` on ``cores`` (default: the cores this process may run on), with each explicitly
    given setting (non-zero / not None) in place of the layout's own. Raises ``ValueError`` for an unknown
    name or settings that would oversubscribe the cores."""
    if name not in LAYOUTS:
        raise ValueError(f"layout {name!r} is not one of {', '.join(LAYOUTS)}")
    n = cores or available_cores()
    if name == "split":
        threads, workers, spin = 1, n, False
    else:
        threads, workers, spin = n, 1, name == "pool-spin"
    if intra_op_threads:
        threads = intra_op_threads
        workers = executor_workers or max(1, n // threads)
    elif executor_workers:
        workers = executor_workers
        threads = max(1, n // workers)
    if threads < 1 or workers < 1 or workers * threads > n:
        raise ValueError(
            f"executor_workers {workers} x intra_op_threads {threads} must be between 1 and the {n} cores "
            "available"
        )
    return Layout(name, n, threads, workers, workers, spin if spinning is None else spinning)
