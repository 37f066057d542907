"""Shared helpers: the tiny repository, requests for it, and services over it (real onnxruntime)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.core.models.runner import ControlMode
from gateway.core.service import Service
from gateway.core.types import Datatype, InferRequest, Tensor
from gateway.repository import create_service
from tests.fixtures.tinyrepo import build_tiny_repository

# 2 cores are shared by the whole suite: one intra-op thread, two executor workers.
BACKEND_OPTIONS: dict[str, Any] = {
    "intra_op_threads": 1,
    "executor_workers": 2,
    "cores": 2,
    "allow_spinning": False,
}
GATED = "tests.gateway.gated:GatedBackend"


def tiny_request(model: str, ids: Any, mask: Any = None, **kwargs: Any) -> InferRequest:
    input_ids = np.asarray(ids, dtype=np.int64)
    attention_mask = np.ones_like(input_ids) if mask is None else np.asarray(mask, dtype=np.int64)
    return InferRequest(
        model,
        [
            Tensor("input_ids", Datatype.INT64, input_ids.shape, input_ids),
            Tensor("attention_mask", Datatype.INT64, attention_mask.shape, attention_mask),
        ],
        **kwargs,
    )


def random_ids(rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
    return rng.integers(1, 32, size=(rows, length), dtype=np.int64)


@asynccontextmanager
async def serving(repo: Path, **options: Any) -> AsyncIterator[Service]:
    """A started service over ``repo``; closed (drained) on exit."""
    options.setdefault("backend_options", BACKEND_OPTIONS)
    service = create_service(repo, **options)
    await service.start()
    try:
        yield service
    finally:
        await service.close(timeout_s=10)


class Gate:
    """Holds every batch in the gated backend until ``open``; ``entered`` waits until a batch is running."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.started = threading.Semaphore(0)

    @property
    def backend_options(self) -> dict[str, Any]:
        return {"gate": self.event, "started": self.started}

    @property
    def options(self) -> dict[str, Any]:
        return {"backend": GATED, "backend_options": self.backend_options}

    async def entered(self, timeout_s: float = 10.0) -> None:
        if not await asyncio.to_thread(self.started.acquire, True, timeout_s):
            raise TimeoutError("no batch reached the backend")

    def open(self) -> None:
        self.event.set()


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    return build_tiny_repository(tmp_path / "repo")


@pytest.fixture
def build(tmp_path: Path) -> Callable[..., Path]:
    """``build(**TinyOptions fields)`` -> a fresh tiny repository."""
    counter = iter(range(1000))

    def _build(**overrides: Any) -> Path:
        return build_tiny_repository(tmp_path / f"repo{next(counter)}", **overrides)

    return _build


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.open()  # never leave an executor thread waiting


__all__ = ["ControlMode", "Gate", "random_ids", "serving", "tiny_request"]
