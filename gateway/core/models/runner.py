"""What the core needs from the world outside it: somewhere models come from, and something that runs
them. ``gateway/repository.py`` and ``gateway/backends/`` implement these; the core knows only the shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Literal, Protocol

import numpy as np

from gateway.core.config import ModelSpec, RepositoryScan


class ControlMode(StrEnum):
    """Triton's ``--model-control-mode``."""

    NONE = "none"  # load everything at start, never change
    POLL = "poll"  # re-scan the repository every poll interval and apply changes
    EXPLICIT = "explicit"  # load and unload only through the repository API


Placement = Literal["local", "remote", "both"]  # where a variant's batches run (``placement_of``)
PLACEMENTS: tuple[Placement, ...] = ("local", "remote", "both")


class Runner(Protocol):
    """One loaded model version, ready to run whole batches. A runner may also say where it runs
    (``placement``: ``local`` in-process, ``remote`` on the Triton fleet, ``both``: local first, overflow
    to the fleet) and, when it can run remotely, whether a server has it ready now (``remote_ready()``);
    without them it is local."""

    async def infer(
        self,
        feeds: Mapping[str, np.ndarray],
        wide: bool = False,
        *,
        remote: bool = False,
        deadline_ns: int = 0,
    ) -> dict[str, np.ndarray]:
        """Run one batch (``wide``: it has the whole compute pool, see ``batching.pool``; ``remote``: on a
        remote slot; ``deadline_ns``: the batch's earliest SLO deadline, 0 for none, which a remote call
        uses to time out and retry). Must not compute on the event loop."""
        ...

    @property
    def calibration(self) -> Mapping[str, Mapping[int, float]]:
        """Seconds per batch measured when the runner was loaded: pool mode -> rows -> seconds (empty when
        the backend measures nothing). The latency model starts from these."""
        ...

    def close(self) -> None: ...


def placement_of(runner: object) -> Placement:
    found = getattr(runner, "placement", "local")
    return found if found in PLACEMENTS else "local"


def remote_ready(runner: object) -> bool:
    """Whether ``runner`` can run a batch on a remote server now."""
    ready = getattr(runner, "remote_ready", None)
    return placement_of(runner) != "local" and callable(ready) and bool(ready())


class ModelLoader(Protocol):
    @property
    def pool_shape(self) -> tuple[int, bool]:
        """The compute pool its runners share: batches at once, and whether a lone batch takes every core
        (``gateway.core.batching.pool``)."""
        ...

    async def load(self, spec: ModelSpec, version: int) -> Runner:
        """Create and warm up a runner for ``spec`` at ``version``; raise with a message naming the file."""
        ...

    def close(self) -> None: ...


class ModelSource(Protocol):
    def scan(self) -> RepositoryScan:
        """Read every model in the repository (blocking file I/O: call it off the loop)."""
        ...
