"""Placement: each variant runs in-process (the local backend), on the Triton fleet
(``gateway.backends.triton``), or both (local first, overflowing to the fleet). ``PlacedLoader`` is the
core's ``ModelLoader`` over a local ``BackendLoader`` and a ``TritonFleet``:

- ``load`` builds the local runner only for variants placed ``local`` or ``both`` (a remote-only variant
  holds no session here) and a ``TritonRunner`` for those placed ``remote`` or ``both``; the fleet starts
  (connects and runs one health round) on the first load.
- ``remote_slots`` is the pool's remote capacity (``batching.pool``): ``slots_per_server`` for every server
  that is up with its circuit not open. It counts all servers for every variant: a batch is bound to a
  remote slot only for a variant some server has READY (``PlacedRunner.remote_ready``), but two models on
  disjoint servers share the count.
- The fleet's per-server metrics go on the gateway's registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry

from gateway.backends.base import BackendLoader, ExecutorRunner
from gateway.backends.triton import FleetConfig, NoServerReady, RemoteRejected, TritonFleet, TritonRunner
from gateway.core.config import ModelSpec
from gateway.core.errors import InvalidInput, Unavailable
from gateway.core.models.runner import Placement


class PlacedRunner:
    """One variant's runner: local, remote or both (``Runner.placement``)."""

    def __init__(
        self, placement: Placement, local: ExecutorRunner | None, remote: TritonRunner | None
    ) -> None:
        self.placement, self._local, self._remote = placement, local, remote

    async def infer(
        self,
        feeds: Mapping[str, np.ndarray],
        wide: bool = False,
        *,
        remote: bool = False,
        deadline_ns: int = 0,
    ) -> dict[str, np.ndarray]:
        if self._local is None or (remote and self._remote is not None):
            assert self._remote is not None
            try:
                return await self._remote.infer(feeds, deadline_ns=deadline_ns)
            except RemoteRejected as e:  # the gateway checked the request; the server still refused it
                raise InvalidInput(str(e)) from e
            except NoServerReady as e:
                raise Unavailable(str(e)) from e
        return await self._local.infer(feeds, wide)

    def remote_ready(self) -> bool:
        return self._remote is not None and bool(self._remote.fleet.ready_for(self._remote.model))

    @property
    def calibration(self) -> Mapping[str, Mapping[int, float]]:
        return self._local.calibration if self._local is not None else {}

    def close(self) -> None:
        if self._local is not None:
            self._local.close()


@dataclass(frozen=True, slots=True)
class Scaleout:
    """What ``varigate serve --triton-servers ... --placement ... --variant-placement ...`` asks for."""

    fleet: FleetConfig
    placement: Placement = "both"
    overrides: Mapping[str, Placement] = field(default_factory=dict)
    registry: CollectorRegistry | None = None  # where the per-server metrics go


class PlacedLoader:
    def __init__(self, local: BackendLoader, scaleout: Scaleout) -> None:
        self.local, self.placement = local, scaleout.placement
        self.overrides = dict(scaleout.overrides)
        self.fleet = TritonFleet(scaleout.fleet, scaleout.registry)
        self._started: asyncio.Task[None] | None = None

    @property
    def pool_shape(self) -> tuple[int, bool]:
        return self.local.pool_shape

    def placement_of(self, variant: str) -> Placement:
        return self.overrides.get(variant, self.placement)

    def remote_slots(self) -> int:
        return self.fleet.capacity()

    async def load(self, spec: ModelSpec, version: int) -> PlacedRunner:
        where = self.placement_of(spec.name)
        remote = None
        if where != "local":
            if self._started is None:
                self._started = asyncio.ensure_future(self.fleet.start())
            await asyncio.shield(self._started)
            remote = TritonRunner(self.fleet, spec.name, [o.name for o in spec.config.outputs])
        local = await self.local.load(spec, version) if where != "remote" else None
        return PlacedRunner(where, local, remote)

    def close(self) -> None:
        self.local.close()

    async def aclose(self) -> None:
        """Stop the fleet's health checks and close its connections."""
        if self._started is not None:
            await self.fleet.close()
