"""The backend interface: where a batch runs.

A ``Backend`` turns a model version directory plus its config into a ``Runner`` (synchronous: ``run``
computes one whole batch). ``BackendLoader`` adapts any backend to the core's ``ModelLoader``: runners are
created and warmed up off the event loop at load time, and every ``run`` goes to the backend's bounded
executor, so the loop never computes. Backends are named ``"module:attr"`` (as uvicorn names apps) and
imported only when chosen.
"""

from __future__ import annotations

import asyncio
import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gateway.core.config import ModelConfig, ModelSpec

DEFAULT_BACKEND = "gateway.backends.onnxruntime:OnnxRuntimeBackend"


class BackendLoadError(RuntimeError):
    """A backend cannot be named, built or cannot load a model; the message names it."""


class Runner(Protocol):
    """A backend's runner. It may also have ``run_wide(feeds)`` (the batch has the whole compute pool: run
    it on every core) and ``timings`` (what ``warmup`` measured: pool mode -> rows -> seconds)."""

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Compute one batch (blocking; called on the backend's executor)."""
        ...

    def warmup(self) -> None: ...

    def close(self) -> None: ...


class Backend(ABC):
    @property
    @abstractmethod
    def executor(self) -> Executor:
        """The bounded pool every ``Runner.run`` of this backend executes on."""

    @abstractmethod
    def load(self, model_dir: Path, config: ModelConfig) -> Runner:
        """Build a runner for the version directory ``model_dir`` (blocking)."""

    @property
    def default_instances(self) -> int:
        """Batches of one model version in flight where config.pbtxt declares no ``instance_group``."""
        return 1

    @property
    def pool_shape(self) -> tuple[int, bool]:
        """The compute pool (``gateway.core.batching.pool``): batches at once, and whether a batch alone
        takes every core (``adaptive``). By default one batch per executor worker."""
        workers = getattr(self.executor, "_max_workers", self.default_instances)
        return max(1, int(workers)), False

    def close(self) -> None:
        """Release the executor without blocking the caller (after a drain nothing runs on it)."""
        self.executor.shutdown(wait=False, cancel_futures=True)


class ExecutorRunner:
    """The core's async ``Runner`` over a backend runner: ``infer`` runs on the backend's executor."""

    def __init__(self, runner: Runner, executor: Executor) -> None:
        self.runner, self._executor = runner, executor

    async def infer(
        self,
        feeds: Mapping[str, np.ndarray],
        wide: bool = False,
        *,
        remote: bool = False,
        deadline_ns: int = 0,
    ) -> dict[str, np.ndarray]:
        if remote:
            raise RuntimeError("an in-process runner cannot run a batch on a remote slot")
        run = getattr(self.runner, "run_wide", self.runner.run) if wide else self.runner.run
        return await asyncio.get_running_loop().run_in_executor(self._executor, run, feeds)

    @property
    def calibration(self) -> Mapping[str, Mapping[int, float]]:
        found: Mapping[str, Mapping[int, float]] = getattr(self.runner, "timings", {})
        return found

    def close(self) -> None:
        self.runner.close()


class BackendLoader:
    """The core's ``ModelLoader`` over one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def pool_shape(self) -> tuple[int, bool]:
        return self.backend.pool_shape

    async def load(self, spec: ModelSpec, version: int) -> ExecutorRunner:
        runner = await asyncio.to_thread(self._load, spec, version)
        return ExecutorRunner(runner, self.backend.executor)

    def _load(self, spec: ModelSpec, version: int) -> Runner:
        runner = self.backend.load(spec.version_path(version), spec.config)
        try:
            runner.warmup()
        except BaseException:
            runner.close()
            raise
        return runner

    def close(self) -> None:
        self.backend.close()


def import_from_string(name: str) -> Any:
    """``"package.module:attr"`` -> the attribute, with a message that names what is missing."""
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise BackendLoadError(f"backend {name!r} must be given as 'module:attr'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendLoadError(f"backend {name!r}: cannot import module {module_name!r} ({e})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise BackendLoadError(
            f"backend {name!r}: module {module_name!r} has no attribute {attr!r}"
        ) from None


def load_backend(name: str = DEFAULT_BACKEND, **options: Any) -> Backend:
    """Import and build the backend named ``"module:attr"`` with ``options`` as keyword arguments."""
    factory = import_from_string(name)
    backend = factory(**options)
    if not isinstance(backend, Backend):
        raise BackendLoadError(f"backend {name!r} built a {type(backend).__name__}, not a Backend")
    return backend
