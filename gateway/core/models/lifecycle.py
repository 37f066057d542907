"""Loading, reloading and unloading models without dropping a request.

A (re)load builds every new version's runner and batcher first; only when all of them are up does the
registry switch to them, in one replace. Versions that went away drain (their batcher finishes every
request it accepted) and close after the switch. If anything fails to load, whatever served before keeps
serving, the reason is recorded on the model, and the same broken files are not retried until they change.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import NoReturn

from gateway.core.batching.batcher import Batcher
from gateway.core.batching.pool import ComputePool
from gateway.core.config import ModelSpec, RepositoryScan
from gateway.core.errors import ModelLoadError, ModelNotFound
from gateway.core.models.registry import UNLOADED, ModelRecord, ModelState, Registry, VersionState
from gateway.core.models.runner import ModelLoader
from gateway.core.telemetry.observer import Observer


def spec_key(spec: ModelSpec) -> str:
    """Changes when the config, the card or any served version's files change."""
    versions = ",".join(f"{v}={fp}" for v, fp in sorted(spec.versions.items()))
    return hashlib.sha256(f"{spec.fingerprint}|{versions}".encode()).hexdigest()


class ModelManager:
    def __init__(
        self, registry: Registry, loader: ModelLoader, observer: Observer, pool: ComputePool | None = None
    ) -> None:
        self._registry = registry
        self._loader = loader
        self._observer = observer
        self.pool = pool or ComputePool(*loader.pool_shape, remote=getattr(loader, "remote_slots", None))
        self._lock = asyncio.Lock()
        self._refused: dict[str, str] = {}  # model -> spec_key that failed to load

    async def apply(self, spec: ModelSpec) -> None:
        """Serve ``spec``: load what is new or changed, switch, then drain and close what it replaced.
        Raises ``ModelLoadError`` (after recording it) when a version fails to load."""
        async with self._lock:
            await self._apply(spec)

    async def load(self, name: str, specs: Mapping[str, ModelSpec]) -> None:
        """Apply the variant ``name``, or every variant of the logical model ``name``, out of ``specs``."""
        chosen = (
            [specs[name]] if name in specs else [s for s in specs.values() if s.config.logical_model == name]
        )
        if not chosen:
            raise ModelNotFound(f"unknown model {name!r}: not in the repository")
        for spec in chosen:
            await self.apply(spec)

    async def unload(self, name: str, reason: str = UNLOADED) -> None:
        async with self._lock:
            record = self._registry.require(name)
            draining = tuple(replace(v, state=ModelState.UNLOADING) for v in record.versions)
            self._registry.put(replace(record, versions=draining))
            await self._retire(draining)
            self._registry.put(replace(self._registry.require(name), versions=(), reason=reason))

    async def sync(self, scan: RepositoryScan) -> None:
        """Make the registry match ``scan`` (poll mode): apply new and changed models, record unreadable
        ones (an older copy keeps serving), unload and forget models that left the repository."""
        for _, spec in sorted(scan.models.items()):
            if self._changed(spec):
                try:
                    await self.apply(spec)
                except ModelLoadError:
                    pass  # recorded on the model; the previous version (if any) keeps serving
        for name, error in sorted(scan.errors.items()):
            self.refuse(name, error)
        for record in self._registry.records():
            if record.name not in scan.models and record.name not in scan.errors:
                await self.unload(record.name)
                self._registry.remove(record.name)
                self._refused.pop(record.name, None)

    def register(self, specs: Iterable[ModelSpec]) -> None:
        """Make models known without loading them (explicit mode)."""
        for spec in specs:
            if self._registry.get(spec.name) is None:
                self._registry.put(ModelRecord(spec.name, spec, (), UNLOADED))

    def mark_serving(self, why: str) -> None:
        """Say on every serving model why its repository copy was not read this time (it keeps serving; the
        next good scan clears it)."""
        for record in self._registry.records():
            if record.ready:
                self.refuse(record.name, why)

    def refuse(self, name: str, error: str) -> None:
        """Record that the repository's copy of ``name`` cannot be read."""
        record = self._registry.get(name)
        if record is not None and record.ready:
            serving = ", ".join(str(v.version) for v in record.ready)
            self._registry.put(replace(record, reason=f"{error}; still serving version {serving}"))
        else:
            self._registry.put(ModelRecord(name, record.spec if record else None, (), error))

    async def close(self, timeout_s: float | None = None) -> None:
        """Unload everything; ``timeout_s`` bounds each version's drain (see ``Batcher.close``)."""
        async with self._lock:
            for record in self._registry.records():
                await self._retire(record.versions, timeout_s)
                self._registry.put(replace(record, versions=(), reason=UNLOADED))

    # -- internals ------------------------------------------------------------------------------------

    def _changed(self, spec: ModelSpec) -> bool:
        if self._refused.get(spec.name) == spec_key(spec):
            return False
        record = self._registry.get(spec.name)
        if record is None or record.spec is None:
            return True
        serving = {v.version for v in record.ready}
        # a recorded reason (a refused copy) is cleared by applying the good copy again
        return spec_key(record.spec) != spec_key(spec) or serving != set(spec.versions) or record.reason != ""

    async def _apply(self, spec: ModelSpec) -> None:
        old = self._registry.get(spec.name)
        if not spec.versions:
            self._refuse_load(
                spec, old, f"model {spec.name!r} has no version directory to serve in {spec.path}"
            )
        keep: dict[int, VersionState] = {}  # versions whose config and files did not change keep serving
        if old is not None and old.spec is not None and old.spec.fingerprint == spec.fingerprint:
            unchanged = {v for v, fp in spec.versions.items() if old.spec.versions.get(v) == fp}
            keep = {v.version: v for v in old.ready if v.version in unchanged}
        to_load = [v for v in sorted(spec.versions) if v not in keep]
        retired = tuple(
            replace(v, state=ModelState.UNLOADING)
            for v in (old.versions if old else ())
            if v.version not in keep
        )
        if not to_load and not retired:
            self._registry.put(replace(old, spec=spec, reason="") if old else ModelRecord(spec.name, spec))
            return
        if old is None or not old.ready:
            loading = tuple(VersionState(v, ModelState.LOADING) for v in to_load)
            self._registry.put(ModelRecord(spec.name, spec, loading))
        loaded: list[VersionState] = []
        for version in to_load:
            try:
                runner = await self._loader.load(spec, version)
            except Exception as e:  # noqa: BLE001 - any failure refuses the whole new copy
                await self._retire(loaded)
                self._refuse_load(spec, old, f"failed to load model {spec.name!r} version {version}: {e}")
            batcher = Batcher(
                spec.name, str(version), spec.config, runner, observer=self._observer, pool=self.pool
            )
            loaded.append(VersionState(version, ModelState.READY, batcher=batcher))
        serving = sorted([*keep.values(), *loaded], key=lambda v: v.version)
        for v in serving:
            if v.batcher is not None:
                v.batcher.start()
        self._registry.put(ModelRecord(spec.name, spec, tuple(serving) + retired))
        self._refused.pop(spec.name, None)
        for v in loaded:
            self._observer.model_state(spec.name, str(v.version), True)
        await self._retire(retired)
        current = self._registry.require(spec.name)
        self._registry.put(replace(current, versions=tuple(v for v in current.versions if v not in retired)))

    def _refuse_load(self, spec: ModelSpec, old: ModelRecord | None, message: str) -> NoReturn:
        self._refused[spec.name] = spec_key(spec)
        if old is not None and old.ready:
            serving = ", ".join(str(v.version) for v in old.ready)
            self._registry.put(replace(old, reason=f"{message}; still serving version {serving}"))
        else:
            failed = tuple(VersionState(v, ModelState.UNAVAILABLE, message) for v in sorted(spec.versions))
            self._registry.put(ModelRecord(spec.name, spec, failed, message))
        raise ModelLoadError(message)

    async def _retire(self, versions: Iterable[VersionState], timeout_s: float | None = None) -> None:
        """Drain and close ``versions`` (their batchers finish every accepted request first)."""
        for v in versions:
            if v.batcher is None:
                continue
            await v.batcher.close(timeout_s)
            v.batcher.runner.close()
            self._observer.model_state(v.batcher.model, str(v.version), False)
