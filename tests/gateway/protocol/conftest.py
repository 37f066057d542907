"""The real gateway in the test's own event loop: ``gateway.main.Gateway`` (the wiring ``varigate serve``
runs) over a real ``Service`` on the tiny repository, HTTP and gRPC on free loopback ports.

``tritonclient``'s ``.aio`` clients run in the same loop; its sync clients run in a thread
(``asyncio.to_thread``) so the loop keeps serving. Tests that must hold a batch use the gated onnxruntime
backend (``tests/gateway/gated.py``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.main import Gateway, build_service
from gateway.metrics import Metrics
from gateway.settings import ENV_PREFIX, Settings
from tests.e2e.support import metric_value
from tests.fixtures.tinyrepo import build_tiny_repository
from tests.gateway.conftest import BACKEND_OPTIONS, GATED, Gate

LIMIT_BYTES = 1 << 20
START_TIMEOUT_S = 30.0


@pytest.fixture(autouse=True)
def _no_varigate_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Settings`` reads ``VARIGATE_*`` variables; the gateways here are configured by the test alone."""
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def text_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny repository with the string model; shared, so no test may write to it."""
    return build_tiny_repository(tmp_path_factory.mktemp("protocol") / "repo", text=True)


def http_url(gw: Gateway) -> str:
    return f"127.0.0.1:{gw.http_port}"


def grpc_url(gw: Gateway) -> str:
    return f"127.0.0.1:{gw.grpc_port}"


@asynccontextmanager
async def running(repo: Path, *, gate: Gate | None = None, **settings: Any) -> AsyncIterator[Gateway]:
    """A started gateway over ``repo``; ``settings`` are ``Settings`` fields (ports are free ones).
    With ``gate``, batches run on the gated onnxruntime backend."""
    options: dict[str, Any] = {
        "http_port": 0,
        "grpc_port": 0,
        "allow_metrics": False,
        "log_level": "warning",
        "exit_timeout_secs": 10.0,
        "max_request_bytes": LIMIT_BYTES,
        **settings,
    }
    if gate is not None:
        options["backend"] = GATED
    s = Settings(repository=repo, **options)
    metrics = Metrics()
    # built as ``varigate serve`` builds it (policy, drift, queue defaults, health), on the 2-core backend
    service = build_service(
        s, metrics, backend_options=BACKEND_OPTIONS if gate is None else gate.backend_options
    )
    gw = Gateway(s, service, metrics)
    await gw.start()
    try:
        await _until_answering(gw)
        yield gw
    finally:
        if gate is not None:
            gate.open()  # never leave a batch waiting on the gate while the gateway drains
        await gw.stop()


async def _until_answering(gw: Gateway) -> None:
    """Poll until the HTTP listener answers (any status: readiness is the test's business)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            try:
                await client.get(f"http://{http_url(gw)}/v2/health/live")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)


async def wait_pending(gw: Gateway, model: str, count: int, timeout_s: float = 10.0) -> None:
    """Poll Triton's pending-request gauge of ``model`` until ``count`` requests wait in its queue."""
    deadline = time.monotonic() + timeout_s
    while (
        metric_value(gw.metrics.render().decode(), "nv_inference_pending_request_count", model=model) != count
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {count} requests pending for {model!r}")
        await asyncio.sleep(0.005)


@pytest.fixture
async def gw(text_repo: Path) -> AsyncIterator[Gateway]:
    """The default gateway: every tiny model plus the string model, a 1 MiB request limit."""
    async with running(text_repo) as g:
        yield g
