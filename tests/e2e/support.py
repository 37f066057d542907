"""Running the real gateway for end-to-end tests: ``python -m gateway.cli serve ...`` in a subprocess on
free loopback ports, over a tiny but real ONNX repository; readiness is polled, never assumed."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tritonclient.utils import InferenceServerException

from loadtest import server
from tests.fixtures.tinyrepo import VOCAB_SIZE, build_tiny_repository

ROOT = server.ROOT
START_TIMEOUT_S = 60.0


class GatewayProcess(server.GatewayProcess):
    """``loadtest.server.GatewayProcess`` (the one launcher) with a test's start timeout and metric lookup."""

    def __init__(
        self, repository: Path, log_path: Path, args: Sequence[str] = (), env: dict[str, str] | None = None
    ):
        super().__init__(repository, log_path, args, env, start_timeout_s=START_TIMEOUT_S)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample from /metrics (0 when absent)."""
        return metric_value(httpx.get(self.metrics_url).text, name, **labels)


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def run_gateway(tmp: Path, args: list[str] | None = None, **repo_options: Any) -> Iterator[GatewayProcess]:
    """Build a tiny repository under ``tmp`` (``TinyOptions`` overrides), serve it, kill it afterwards."""
    repo = build_tiny_repository(tmp / "repo", **repo_options)
    gw = GatewayProcess(repo, tmp / "gateway.log", args or [])
    try:
        yield gw.start()
    finally:
        gw.kill()


def tiny_batch(rows: int, length: int, seed: int = 0, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random ids (never the padding id 0) and a mask; the last ``pad`` positions padded."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB_SIZE, size=(rows, length), dtype=np.int64)
    mask = np.ones((rows, length), dtype=np.int64)
    if pad:
        ids[:, -pad:], mask[:, -pad:] = 0, 0
    return ids, mask


def infer_inputs(client: Any, ids: np.ndarray, mask: np.ndarray) -> list[Any]:
    """``input_ids`` / ``attention_mask`` as ``client.InferInput`` objects; ``client`` is the tritonclient
    module the request goes through (``tritonclient.http`` or ``tritonclient.grpc``, or their ``aio``)."""
    out = []
    for name, arr in (("input_ids", ids), ("attention_mask", mask)):
        i = client.InferInput(name, list(arr.shape), "INT64")
        i.set_data_from_numpy(arr)
        out.append(i)
    return out


async def timed(call: Any) -> tuple[float, Any]:
    """How long ``call`` took, and its result or the ``InferenceServerException`` it raised."""
    t0 = time.monotonic()
    try:
        result = await call
    except InferenceServerException as e:
        result = e
    return time.monotonic() - t0, result


async def until(predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
