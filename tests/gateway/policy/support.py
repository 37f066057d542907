"""Open-loop traffic for the policy tests: requests sent on a schedule, never waiting for answers, through
``tritonclient.http.aio``, each answer recorded with the variant that served it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.e2e.support import GatewayProcess, infer_inputs, run_gateway, tiny_batch

SLOW = "tests.gateway.policy.slow:SlowBackend"
# fp32: 40 ms a batch + 20 ms a row; int8: 8 ms + 2 ms a row (the card profiles say the same)
DELAYS = (("fp32", 40.0, 20.0), ("int8", 8.0, 2.0), ("bad", 6.0, 1.0), ("pruned", 5.0, 1.0))


@dataclass(frozen=True, slots=True)
class Reply:
    sent_s: float  # since the start of the run
    variant: str  # "" when refused
    latency_s: float
    slo_met: bool | None
    status: str  # "ok" or the error's status
    output: np.ndarray | None = None


def inputs(seed: int, rows: int = 1) -> list[th.InferInput]:
    ids, mask = tiny_batch(rows, 4, seed=seed)
    return infer_inputs(th, ids, mask)


async def one(
    client: tha.InferenceServerClient, model: str, seed: int, t0: float, rows: int = 1, **params: Any
) -> Reply:
    sent = time.monotonic()
    try:
        result = await client.infer(model, inputs(seed, rows), parameters=params or None)
    except InferenceServerException as e:
        return Reply(sent - t0, "", time.monotonic() - sent, False, str(e.status()))
    done = time.monotonic()
    p = result.get_response().get("parameters", {})
    emb = result.as_numpy("embedding")
    return Reply(sent - t0, p["varigate_variant"], done - sent, p.get("varigate_slo_met"), "ok", emb)


async def open_loop(
    client: tha.InferenceServerClient,
    model: str,
    phases: list[tuple[float, float]],
    rows: int = 1,
    **params: Any,
) -> list[Reply]:
    """``phases``: (seconds, requests per second), run back to back at evenly spaced arrivals; each request
    carries ``rows`` rows."""
    t0 = time.monotonic()
    tasks: list[asyncio.Task[Reply]] = []
    start, seed = 0.0, 0
    for seconds, rate in phases:
        n = int(seconds * rate)
        for i in range(n):
            at = t0 + start + i / rate
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            seed += 1
            tasks.append(asyncio.create_task(one(client, model, seed, t0, rows, **params)))
        start += seconds
    return list(await asyncio.gather(*tasks))


def share(replies: list[Reply], variant: str, start_s: float = 0.0, end_s: float = 1e9) -> float:
    window = [r for r in replies if start_s <= r.sent_s < end_s and r.status == "ok"]
    return sum(r.variant == variant for r in window) / max(1, len(window))


__all__ = ["DELAYS", "SLOW", "GatewayProcess", "Reply", "open_loop", "run_gateway", "share"]
