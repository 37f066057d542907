"""Serve first, improve live (what ``scripts/run.sh`` relies on): a gateway in poll mode serves the logical
model from the variants built so far, and a variant that lands later, written atomically the way the
compressor writes it, is served and chosen without a restart and without one failed request."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import tritonclient.http.aio as tha

from tests.e2e.support import GatewayProcess, tiny_batch, until
from tests.e2e.test_e2e_scheduling import http_inputs
from tests.fixtures.tinyrepo import build_tiny_repository, tiny_reference


async def test_a_variant_that_lands_under_traffic_is_chosen_with_no_failed_request(
    start_gateway: Any, tmp_path: Path
) -> None:
    # the quick variant first: int8 only; the fp32 reference lands later, as a background build finishes
    poll = ["--model-control-mode", "poll", "--repository-poll-secs", "0.2"]
    gw: GatewayProcess = start_gateway(poll, variants=("int8",), classifier=False)
    landing = build_tiny_repository(tmp_path / "landing", variants=("fp32",), classifier=False)
    ids, mask = tiny_batch(2, 5, seed=12)
    reference = tiny_reference(ids, mask)
    variants: list[str] = []  # the serving variant of every answer, in completion order
    failures: list[str] = []
    stop = asyncio.Event()

    async def traffic(client: tha.InferenceServerClient) -> None:
        while not stop.is_set():
            try:
                result = await client.infer("tiny", http_inputs(ids, mask))
                variants.append(result.get_response()["parameters"]["varigate_variant"])
                if variants[-1] == "tiny.fp32":  # the landed model answers with its own numbers
                    assert abs(result.as_numpy("embedding") - reference).max() < 1e-5
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                failures.append(repr(e))

    def served_by(variant: str) -> Any:
        async def check() -> bool:
            return len(variants) >= 10 and variants[-10:] == [variant] * 10

        return check

    async with tha.InferenceServerClient(gw.http, conn_limit=8) as client:
        tasks = [asyncio.create_task(traffic(client)) for _ in range(4)]
        try:
            await until(served_by("tiny.int8"), 15, "traffic on the quick variant")
            before = len(variants)
            os.rename(landing / "tiny.fp32", gw.repository / "tiny.fp32")  # one rename: atomic
            await until(served_by("tiny.fp32"), 15, "the landed fp32 to be chosen")
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        index = await client.get_model_repository_index()
    assert failures == []
    assert set(variants[:before]) == {"tiny.int8"}
    # once chosen, the most accurate variant keeps the traffic (the default policy: no load here)
    first = variants.index("tiny.fp32")
    assert variants[first:].count("tiny.int8") <= 4  # at most the requests already in flight at the switch
    assert {(m["name"], m["state"]) for m in index} >= {("tiny.int8", "READY"), ("tiny.fp32", "READY")}
