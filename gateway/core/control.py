"""Repository control, apart from the data plane (the MLServer split: ``ModelRepositoryHandlers`` beside
``DataPlane``): reading the repository at start, polling it, Triton's repository index, and explicit load
and unload. Models come from a ``ModelSource``; ``ModelManager`` switches versions without dropping a
request. A poll that cannot read the repository at all changes nothing: models keep serving, and their
index reason says why, logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from gateway.core.api import RepositoryEntry
from gateway.core.errors import ModelLoadError, ModelNotFound, Unsupported
from gateway.core.models.lifecycle import ModelManager
from gateway.core.models.registry import Registry
from gateway.core.models.runner import ControlMode, ModelSource

logger = logging.getLogger(__name__)

LOAD_ALL = "*"


class RepositoryControl:
    def __init__(
        self,
        source: ModelSource,
        manager: ModelManager,
        registry: Registry,
        *,
        control_mode: ControlMode = ControlMode.NONE,
        startup_models: Sequence[str] = (),
        poll_interval_s: float = 15.0,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self._source, self._manager, self._registry = source, manager, registry
        self.control_mode = ControlMode(control_mode)
        self._startup_models = tuple(startup_models)
        self._poll_interval_s = poll_interval_s
        self._poller: asyncio.Task[None] | None = None
        self._repository_error = ""

    async def start(self) -> None:
        """Read the repository and load models per the control mode; in poll mode, start polling."""
        scan = await asyncio.to_thread(self._source.scan)
        for name, error in scan.errors.items():
            self._manager.refuse(name, error)
        if self.control_mode is ControlMode.EXPLICIT:
            self._manager.register(scan.models.values())
            wanted = set(scan.models) if LOAD_ALL in self._startup_models else set(self._startup_models)
            for name in sorted(wanted):
                await self._manager.load(name, scan.models)
        else:
            for spec in scan.models.values():
                try:
                    await self._manager.apply(spec)
                except ModelLoadError as e:
                    logger.error("%s", e)
        if self.control_mode is ControlMode.POLL:
            self._poller = asyncio.get_running_loop().create_task(
                self._poll_forever(), name="repository-poll"
            )

    async def poll_once(self) -> None:
        """Re-scan the repository and apply what changed (what the poll task does every interval). A
        repository that cannot be read at all (gone, not a directory, no permission) changes nothing."""
        try:
            scan = await asyncio.to_thread(self._source.scan)
        except OSError as e:
            if str(e) != self._repository_error:
                logger.error("%s; models keep serving what is loaded", e)
            self._repository_error = str(e)
            self._manager.mark_serving(f"{e}; the repository was not re-read")
            return
        if self._repository_error:
            logger.warning("model repository readable again; applying its changes")
            self._repository_error = ""
        await self._manager.sync(scan)

    def index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        return self._registry.index(ready_only)

    async def load(self, name: str, parameters: dict[str, Any] | None = None) -> None:
        self.require_explicit("load")
        if parameters:
            raise Unsupported(f"load parameters {sorted(parameters)} for model {name!r} are not supported")
        scan = await asyncio.to_thread(self._source.scan)
        for missing, error in scan.errors.items():
            if missing == name:
                self._manager.refuse(name, error)
                raise ModelLoadError(f"failed to load model {name!r}: {error}")
        self._manager.register(scan.models.values())
        await self._manager.load(name, scan.models)

    async def unload(self, name: str) -> None:
        self.require_explicit("unload")
        record = self._registry.get(name)
        targets = [record] if record is not None else self._registry.variants(name)
        if not targets:
            raise ModelNotFound(f"unknown model {name!r}: not in the repository")
        for r in targets:
            await self._manager.unload(r.name)

    def require_explicit(self, action: str) -> None:
        if self.control_mode is not ControlMode.EXPLICIT:
            raise Unsupported(
                f"explicit model {action} is not allowed in model control mode {self.control_mode.value!r}"
            )

    def stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self.poll_once()
            except Exception:  # a failed poll must not stop polling
                logger.exception("repository poll failed")
