"""``Service``: what both protocol adapters call (``gateway.core.api.InferenceService``), composed of the
data plane (``gateway.core.dataplane``: infer, metadata, statistics) and repository control
(``gateway.core.control``: start, poll, index, load, unload), the MLServer split. It owns what both share
(the registry, the one event fan-out, the circuit breakers) and the server's own life: readiness, drain and
close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from gateway.core.api import ModelMetadata, ModelStatistics, RepositoryEntry, ServerMetadata
from gateway.core.control import LOAD_ALL, RepositoryControl
from gateway.core.dataplane import DataPlane
from gateway.core.drift.monitor import DriftMonitor
from gateway.core.drift.shadow import Shadower
from gateway.core.models.health import Health, HealthConfig, HealthObserver
from gateway.core.models.lifecycle import ModelManager
from gateway.core.models.registry import UNLOADED, Registry
from gateway.core.models.runner import ControlMode, ModelLoader, ModelSource
from gateway.core.selection.late import LateBinding
from gateway.core.selection.policy import MostAccuratePolicy, Policy, PolicyListener
from gateway.core.telemetry.observer import Fanout, NullObserver, Observer
from gateway.core.telemetry.stats import Statistics
from gateway.core.types import InferRequest, InferResponse

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_EXTENSIONS", "LOAD_ALL", "Service"]

DEFAULT_EXTENSIONS = (
    "binary_tensor_data",
    "parameters",
    "model_configuration",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "statistics",
)


class Service:
    def __init__(
        self,
        source: ModelSource,
        loader: ModelLoader,
        *,
        control_mode: ControlMode = ControlMode.NONE,
        startup_models: Sequence[str] = (),
        poll_interval_s: float = 15.0,
        policy: Policy | None = None,
        observer: Observer | None = None,
        server_name: str = "varigate",
        server_version: str = "0.1.0",
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        strict_readiness: bool = True,
        drift: DriftMonitor | None = None,
        health: HealthConfig | None = None,
    ) -> None:
        observer = observer or NullObserver()
        policy = policy or MostAccuratePolicy()
        self._loader = loader
        self._metadata = ServerMetadata(server_name, server_version, tuple(extensions))
        self._strict = strict_readiness
        self._registry = Registry()
        self.health = Health(health, observer if isinstance(observer, HealthObserver) else None)
        stats = Statistics()
        events = Fanout([stats, self.health, PolicyListener(policy), observer])
        self._manager = ModelManager(self._registry, loader, events)
        if isinstance(policy, LateBinding):
            policy.attach(self._manager.pool, events)
        self._shadow = Shadower(drift, self._registry) if drift is not None else None
        self.data = DataPlane(self._registry, policy, events, stats, self.health, self._shadow)
        self.control = RepositoryControl(
            source,
            self._manager,
            self._registry,
            control_mode=control_mode,
            startup_models=startup_models,
            poll_interval_s=poll_interval_s,
        )
        self._started = False
        self._closed = False
        self._drain_deadline: float | None = None

    @property
    def policy(self) -> Policy:
        return self.data.policy

    @property
    def control_mode(self) -> ControlMode:
        return self.control.control_mode

    # -- the server's life ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.control.start()
        self._started = True

    async def poll_once(self) -> None:
        await self.control.poll_once()

    async def drain(self, timeout_s: float | None = None) -> None:
        """Stop accepting requests (they get ``Unavailable``) and wait until every accepted one finished;
        raise ``TimeoutError`` after ``timeout_s`` (the requests go on; ``close`` ends them)."""
        self.data.accepting = False
        self.control.stop_polling()
        if timeout_s is not None:
            deadline = time.monotonic() + timeout_s
            self._drain_deadline = min(self._drain_deadline or deadline, deadline)
        await asyncio.wait_for(self._drain_queues(), timeout_s)

    async def _drain_queues(self) -> None:
        if isinstance(self.policy, LateBinding):
            await self.policy.drain()  # queued for late binding: dispatched to the batchers first
        batchers = [v.batcher for r in self._registry.records() for v in r.versions if v.batcher is not None]
        await asyncio.gather(*(b.drain() for b in batchers))

    async def close(self, timeout_s: float | None = None) -> None:
        """Drain, then unload every model and release the loader. The drain lasts at most ``timeout_s``, or
        what is left of an earlier ``drain(timeout_s)``; requests unfinished then fail with
        ``Unavailable``."""
        if timeout_s is None and self._drain_deadline is not None:
            timeout_s = max(0.0, self._drain_deadline - time.monotonic())
        try:
            await self.drain(timeout_s)
        except TimeoutError:
            logger.warning("requests still unfinished after draining for %s s are failed", timeout_s)
        finally:
            if isinstance(self.policy, LateBinding):
                self.policy.close()
            if self._shadow is not None:
                await self._shadow.close()
            await self._manager.close(timeout_s=0 if timeout_s is not None else None)
            self._loader.close()
            aclose = getattr(self._loader, "aclose", None)  # a loader with connections of its own
            if aclose is not None:
                await aclose()
            self._closed = True

    def server_live(self) -> bool:
        return not self._closed

    def server_ready(self) -> bool:
        if not (self._started and self.data.accepting and not self._closed):
            return False
        return not self._strict or all(r.ready or r.reason == UNLOADED for r in self._registry.records())

    def server_metadata(self) -> ServerMetadata:
        return self._metadata

    # -- the data plane ---------------------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.data.infer(request)

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.data.model_ready(name, version)

    def check_model(self, name: str, version: str = "") -> None:
        self.data.check_model(name, version)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        return self.data.model_metadata(name, version)

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        return self.data.model_config(name, version)

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        return self.data.statistics(name, version)

    def record_labels(self, model: str, labels: list[tuple[str, object]]) -> tuple[int, list[str]]:
        return self.data.record_labels(model, labels)

    # -- repository control -----------------------------------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        return self.control.index(ready_only)

    async def load_model(self, name: str, parameters: dict[str, Any] | None = None) -> None:
        await self.control.load(name, parameters)

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        await self.control.unload(name)

    def _require_explicit(self, action: str) -> None:
        self.control.require_explicit(action)
