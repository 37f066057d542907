"""The execution layout: how the cores this process may use are split between onnxruntime's threads.
It is part of the contract because both sides use it: the gateway serves with it, and the compressor
profiles every variant's latency at it, so that the cards describe the layout the scheduler runs on.

One compute pool per process: every batch of every variant runs on the backend's one executor, and the
batches running at once never hold more threads than there are cores, so several loaded variants share the
machine without oversubscribing it. ``instances`` is how many batches of one variant may run at once
(Triton's ``instance_group`` count, for a config.pbtxt that declares none): with ``instances == workers``
one hot variant can fill the whole pool.

``choose`` picks the layout from the cores; any setting given explicitly (``--ort-intra-op-threads``,
``--executor-workers``, ``--ort-allow-spinning``) wins (and turns ``adaptive`` into the fixed layout those
settings describe), and a config.pbtxt's own ``instance_group`` wins over ``instances``. Every candidate
runs side by side in docs/BENCHMARKS.md, section Peers (``python -m loadtest.benchmarks --only peers``).

- ``adaptive`` (the default): a batch that finds the whole pool idle runs on every core (an onnxruntime
  session with one intra-op thread per core); a batch that arrives while another runs takes one core (a
  second, single-threaded session of the same model), so under load ``cores`` batches run side by side,
  each on a core of its own. A lone request gets the whole machine, and a loaded one never waits on an
  intra-op barrier whose threads the event loop, the network or another batch has preempted. Every
  variant holds both sessions (twice its weights in memory).
- ``wide``: one batch at a time on all cores, spin-waiting off; ``wide-spin``: the same, spinning on.
- ``split``: one core per batch, always (one intra-op thread, ``workers = instances = cores``).
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass
from typing import Literal

LayoutName = Literal["adaptive", "wide", "wide-spin", "split"]
DEFAULT_LAYOUT: LayoutName = "adaptive"
LAYOUTS: tuple[str, ...] = typing.get_args(LayoutName)


@dataclass(frozen=True, slots=True)
class Layout:
    """What the backend serves with; ``describe()`` is logged at start and written into benchmark rows."""

    name: str
    cores: int
    intra_op_threads: int  # of the session a batch runs on when it has the pool to itself
    executor_workers: int
    instances: int  # batches of one variant in flight, where config.pbtxt declares no instance_group
    spinning: bool
    narrow_threads: int = 0  # adaptive: the threads of a batch that shares the pool (0: not adaptive)

    @property
    def adaptive(self) -> bool:
        return self.narrow_threads > 0

    def describe(self) -> str:
        shape = (
            f"{self.intra_op_threads} intra-op thread(s) for a batch alone, {self.narrow_threads} for each "
            f"of up to {self.executor_workers} at once"
            if self.adaptive
            else f"{self.executor_workers} worker(s) x {self.intra_op_threads} intra-op thread(s)"
        )
        return (
            f"layout {self.name}: {shape} on {self.cores} core(s), {self.instances} instance(s) per variant, "
            f"spinning {'on' if self.spinning else 'off'}"
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
    if name == "adaptive" and not (intra_op_threads or executor_workers) and n > 1:
        return Layout(name, n, n, n, n, True if spinning is None else spinning, narrow_threads=1)
    if name == "split":
        threads, workers, spin = 1, n, False
    else:  # wide, wide-spin, or adaptive on one core / with explicit threads or workers
        threads, workers, spin = n, 1, name != "wide"
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
