"""Models and the process changing under traffic: poll-mode reload with zero failed requests, the
repository API in explicit mode behind restricted APIs, and SIGTERM draining with zero lost requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as tga
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.e2e.support import GatewayProcess, tiny_batch, until
from tests.e2e.test_e2e_scheduling import grpc_inputs, http_inputs, wait_pending
from tests.fixtures.tinyrepo import add_version, tiny_reference


async def test_poll_mode_reload_under_traffic(start_gateway: Any) -> None:
    gw: GatewayProcess = start_gateway(
        ["--model-control-mode", "poll", "--repository-poll-secs", "0.2"],
        variants=("fp32",),
        classifier=False,
    )
    ids, mask = tiny_batch(2, 5, seed=11)
    expected = tiny_reference(ids, mask)
    seen: list[str] = []  # versions in completion order, all clients
    per_client: list[list[str]] = []  # each client's versions, in its own (sequential) order
    failures: list[str] = []
    stop = asyncio.Event()

    async def traffic(client: Any, inputs: Any, version_of: Any) -> None:
        mine: list[str] = []
        per_client.append(mine)
        while not stop.is_set():
            try:
                result = await client.infer("tiny", inputs(ids, mask))
                np.testing.assert_allclose(result.as_numpy("embedding"), expected, rtol=1e-5, atol=1e-6)
                seen.append(version_of(result))
                mine.append(seen[-1])
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                failures.append(repr(e))

    async with tha.InferenceServerClient(gw.http) as http, tga.InferenceServerClient(gw.grpc) as grpc:
        tasks = [
            asyncio.create_task(traffic(http, http_inputs, lambda r: r.get_response()["model_version"]))
            for _ in range(3)
        ]
        tasks += [
            asyncio.create_task(traffic(grpc, grpc_inputs, lambda r: r.get_response().model_version))
            for _ in range(2)
        ]

        async def serving(version: str) -> bool:
            return bool(seen) and seen[-1] == version and seen[-10:].count(version) == len(seen[-10:])

        await until(lambda: serving("1"), 10, "version 1 traffic")
        await asyncio.to_thread(add_version, gw.repository, "tiny.fp32", 2)
        await until(lambda: serving("2"), 15, "the switch to version 2")

        async def refused_v3() -> bool:
            index = await http.get_model_repository_index()
            return any(m["name"] == "tiny.fp32" and m.get("reason") for m in index)

        await asyncio.to_thread(add_version, gw.repository, "tiny.fp32", 3, broken=True)
        await until(refused_v3, 15, "the broken version 3 to be refused")
        served_before = len(seen)

        async def more_traffic() -> bool:
            return len(seen) > served_before + 20

        await until(more_traffic, 10, "traffic after the refusal")
        stop.set()
        await asyncio.gather(*tasks)
        assert await http.is_model_ready("tiny.fp32", "2") and not await http.is_model_ready("tiny.fp32", "3")
    assert failures == []
    assert seen[0] == "1" and set(seen) == {"1", "2"}
    for mine in per_client:  # a request sent after a version-2 answer is never served by version 1
        assert "2" in mine and "1" not in mine[mine.index("2") :]
    assert seen[-20:] == ["2"] * 20  # the broken version 3 never took over


async def test_explicit_mode_and_restricted_repository_api(start_gateway: Any) -> None:
    key = {"admin-key": "s3cret"}
    gw: GatewayProcess = start_gateway(
        [
            "--model-control-mode", "explicit",
            "--load-model", "tiny.fp32",
            "--http-restricted-api", "model-repository:admin-key=s3cret",
            "--grpc-restricted-protocol", "model-repository:admin-key=s3cret",
        ],
        classifier=False,
    )  # fmt: skip
    ids, mask = tiny_batch(1, 4, seed=12)
    async with tha.InferenceServerClient(gw.http) as http, tga.InferenceServerClient(gw.grpc) as grpc:
        assert await http.is_model_ready("tiny.fp32") and not await http.is_model_ready("tiny.int8")
        with pytest.raises(InferenceServerException) as e:
            await http.infer("tiny.int8", http_inputs(ids, mask))
        assert e.value.status() == "503" and "'tiny.int8' is not ready" in e.value.message()
        with pytest.raises(InferenceServerException) as e:
            await http.load_model("tiny.int8")
        assert e.value.status() == "403" and "expecting header 'admin-key'" in e.value.message()
        with pytest.raises(InferenceServerException) as e:
            await grpc.load_model("tiny.int8", headers=key)  # gRPC wants the triton-grpc-protocol- prefix
        assert e.value.status() == "StatusCode.PERMISSION_DENIED"
        assert not await http.is_model_ready("tiny.int8")

        await http.load_model("tiny.int8", headers=key)
        assert await grpc.is_model_ready("tiny.int8")
        result = await grpc.infer("tiny.int8", grpc_inputs(ids, mask))
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(ids, mask, "int8"), rtol=1e-5, atol=1e-6
        )
        index = {m["name"]: m for m in await http.get_model_repository_index(headers=key)}
        assert index["tiny.int8"]["state"] == "READY" and index["tiny.fp32"]["state"] == "READY"

        await grpc.unload_model("tiny.int8", headers={"triton-grpc-protocol-admin-key": "s3cret"})
        assert not await http.is_model_ready("tiny.int8")
        with pytest.raises(InferenceServerException) as e:
            await http.load_model("nonexistent", headers=key)
        assert e.value.status() == "404" and "'nonexistent'" in e.value.message()
        still = await http.infer("tiny", http_inputs(ids, mask))  # inference was never restricted
        np.testing.assert_allclose(
            still.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )


async def test_sigterm_drains_every_accepted_request(start_gateway: Any) -> None:
    gw: GatewayProcess = start_gateway(
        variants=("fp32",), classifier=False, max_queue_delay_us=1_000_000, adaptive_delay=False
    )
    batches = [tiny_batch(1, 3 + i, seed=30 + i) for i in range(6)]
    async with tha.InferenceServerClient(gw.http) as http, tga.InferenceServerClient(gw.grpc) as grpc:
        calls = [
            (
                http.infer("tiny.fp32", http_inputs(ids, mask))
                if i % 3
                else grpc.infer("tiny.fp32", grpc_inputs(ids, mask))
            )
            for i, (ids, mask) in enumerate(batches)
        ]
        pending = [asyncio.create_task(c) for c in calls]
        await wait_pending(gw, len(batches))  # all accepted and waiting for their batch
        assert gw.proc is not None
        gw.proc.terminate()  # SIGTERM
        results = await asyncio.gather(*pending, return_exceptions=True)
    for (ids, mask), result in zip(batches, results, strict=True):
        assert not isinstance(result, BaseException), result
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )
    assert await asyncio.to_thread(gw.proc.wait, 30) == 0
    with pytest.raises(httpx.TransportError):  # stopped accepting
        await asyncio.to_thread(httpx.get, f"http://{gw.http}/v2/health/live")


def test_sigterm_when_idle_exits_zero(start_gateway: Any) -> None:
    gw: GatewayProcess = start_gateway(variants=("fp32",), classifier=False)
    with th.InferenceServerClient(gw.http) as c:
        assert c.is_server_ready()
    started = time.monotonic()
    assert gw.terminate() == 0
    assert time.monotonic() - started < 10
