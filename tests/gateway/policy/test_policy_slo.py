"""The per-request SLO policy (``--policy per-request``, the baseline late binding replaced) seen from
outside: a real gateway on loopback, open-loop traffic from tritonclient.

fp32 takes 40 ms + 20 ms a row (about 30 requests/s within a 250 ms SLO), int8 8 ms + 2 ms a row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as tga
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.e2e.support import infer_inputs, tiny_batch
from tests.fixtures.tinyrepo import tiny_reference
from tests.gateway.policy.conftest import FAST_POLICY
from tests.gateway.policy.support import (
    DELAYS,
    SLOW,
    GatewayProcess,
    inputs,
    one,
    open_loop,
    run_gateway,
    share,
)


def switches(gw: GatewayProcess) -> float:
    return gw.metric("varigate_policy_switches_total", model="tiny")


async def test_under_a_burst_the_mix_steps_down_and_back_and_pinned_requests_stay(
    slo_gateway: GatewayProcess,
) -> None:
    async with tha.InferenceServerClient(slo_gateway.http, conn_limit=300) as client:
        routed = asyncio.create_task(open_loop(client, "tiny", [(3, 5), (2, 80), (4, 5)]))
        pinned = asyncio.create_task(open_loop(client, "tiny.int8", [(9, 4)]))
        await asyncio.sleep(3.0)
        pinned_fp32 = asyncio.create_task(open_loop(client, "tiny.fp32", [(2, 5)]))
        floor = asyncio.create_task(open_loop(client, "tiny", [(2, 5)], max_accuracy_loss=0))
        replies, int8s, fp32s, exact = await asyncio.gather(routed, pinned, pinned_fp32, floor)
    assert all(r.status == "ok" for r in replies + int8s + fp32s + exact)
    assert share(replies, "tiny.fp32", 0, 3) >= 0.9  # light load: the most accurate
    assert share(replies, "tiny.int8", 3, 5) >= 0.7  # the burst: stepped down at once
    assert share(replies, "tiny.fp32", 7.5, 9) >= 0.9  # stepped back up after it
    burst = [r for r in replies if 3 <= r.sent_s < 5]
    assert sum(bool(r.slo_met) for r in burst) >= 0.95 * len(burst)
    # pinned requests are never switched, whatever the load; an accuracy floor is kept under the burst
    assert {r.variant for r in int8s} == {"tiny.int8"} and {r.variant for r in fp32s} == {"tiny.fp32"}
    assert {r.variant for r in exact} == {"tiny.fp32"}
    assert slo_gateway.metric("varigate_policy_switches_total", direction="down") >= 1
    assert slo_gateway.metric("varigate_policy_switches_total", direction="up") >= 1


async def test_steady_load_does_not_flap(slo_gateway: GatewayProcess) -> None:
    """Steady light load stays on fp32; steady load above fp32's capacity steps down once and stays: fp32
    looks feasible again whenever its queue has drained, but the policy steps up only on sustained
    headroom in the arrival rate."""
    async with tha.InferenceServerClient(slo_gateway.http, conn_limit=300) as client:
        await open_loop(client, "tiny", [(2.5, 5)])  # settle on fp32 after earlier tests
        before = switches(slo_gateway)
        light = await open_loop(client, "tiny", [(2, 10)])
        assert switches(slo_gateway) == before and share(light, "tiny.fp32") == 1.0
        heavy = await open_loop(client, "tiny", [(5, 60)])
    assert switches(slo_gateway) - before <= 1
    assert share(heavy, "tiny.int8", 1, 5) >= 0.95
    assert sum(bool(r.slo_met) for r in heavy) >= 0.95 * len(heavy)


async def test_the_slo_comes_from_the_request_the_header_or_the_model(slo_gateway: GatewayProcess) -> None:
    async with tha.InferenceServerClient(slo_gateway.http) as client:
        default = await one(client, "tiny", 1, 0.0)  # varigate.default_slo_ms = 250
        assert default.slo_met is True
        tight = await one(client, "tiny", 2, 0.0, slo_ms=30)  # fp32 alone needs 60 ms: int8
        assert tight.variant == "tiny.int8" and tight.slo_met is True
        pinned = await one(client, "tiny.fp32", 3, 0.0, slo_ms=30)  # pinned: served, and told it was late
        assert pinned.variant == "tiny.fp32" and pinned.slo_met is False
        for bad in ("soon", -5, True):
            with pytest.raises(InferenceServerException, match="slo_ms") as e:
                await client.infer("tiny", inputs(4), parameters={"slo_ms": bad})
            assert e.value.status() == "400"
    ids, mask = tiny_batch(1, 4, seed=5)
    body = {
        "inputs": [
            {"name": "input_ids", "datatype": "INT64", "shape": [1, 4], "data": ids.ravel().tolist()},
            {"name": "attention_mask", "datatype": "INT64", "shape": [1, 4], "data": mask.ravel().tolist()},
        ]
    }
    url = f"http://{slo_gateway.http}/v2/models/tiny/infer"
    async with httpx.AsyncClient() as raw:
        r = await raw.post(url, json=body, headers={"varigate-slo-ms": "30"})
        assert r.status_code == 200 and r.headers["varigate-variant"] == "tiny.int8"
        assert r.headers["varigate-slo-met"] == "true" and r.json()["parameters"]["varigate_slo_met"] is True
        r = await raw.post(url, json=body, headers={"varigate-slo-ms": "whenever"})
        assert r.status_code == 400 and "varigate-slo-ms" in r.json()["error"]
    async with tga.InferenceServerClient(slo_gateway.grpc) as grpc_client:
        result = await grpc_client.infer("tiny", grpc_inputs(1, 5), parameters={"slo_ms": 30})
        params = result.get_response().parameters
        assert params["varigate_variant"].string_param == "tiny.int8"
        assert params["varigate_slo_met"].bool_param is True
        np.testing.assert_allclose(result.as_numpy("embedding"), tiny_reference(ids, mask, "int8"), atol=1e-6)


def grpc_inputs(rows: int, seed: int) -> list[tga.InferInput]:
    ids, mask = tiny_batch(rows, 4, seed=seed)
    return infer_inputs(tga, ids, mask)


@pytest.fixture(scope="module")
def strict_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """fp32 + int8 (loss 0.01) with an accuracy budget of 0.4 % over a short window; requests that cannot be
    in time even alone are refused."""
    yield from run_gateway(
        tmp_path_factory.mktemp("strict"),
        [
            "--backend", SLOW, "--policy", "per-request", *FAST_POLICY, "--shadow-fraction", "0",
            "--slo-infeasible", "reject",
            "--accuracy-budget", "0.004", "--accuracy-budget-window", "20",
        ],
        variants=("fp32", "int8"),
        delays_ms=DELAYS,
        default_slo_ms=250,
        classifier=False,
    )  # fmt: skip


async def test_the_accuracy_budget_holds_under_overload(strict_gateway: GatewayProcess) -> None:
    """int8 (1 % loss) is beyond a 0.4 % budget: under a load fp32 cannot carry, int8 takes only what the
    budget admits, and the rest is served late on fp32."""
    async with tha.InferenceServerClient(strict_gateway.http, conn_limit=300) as client:
        replies = await open_loop(client, "tiny", [(3, 50)])
    ok = [r for r in replies if r.status == "ok"]
    assert len(ok) == len(replies)
    int8 = share(ok, "tiny.int8")
    assert 0.1 <= int8 <= 0.4 * 1.25, int8  # used, and within the budget (mean loss = share x 1 %)
    assert strict_gateway.metric("varigate_policy_accuracy_loss_ratio", model="tiny") <= 0.004 + 1e-9
    assert strict_gateway.metric("varigate_policy_selections_total", reason="aggressive") > 0


async def test_requests_that_cannot_be_in_time_are_refused_early(strict_gateway: GatewayProcess) -> None:
    async with tha.InferenceServerClient(strict_gateway.http) as client:
        with pytest.raises(InferenceServerException, match="cannot meet the request's SLO") as e:
            await client.infer("tiny", inputs(1), parameters={"slo_ms": 5})  # int8 alone needs 10 ms
        assert e.value.status() == "429"
    async with tga.InferenceServerClient(strict_gateway.grpc) as grpc_client:
        with pytest.raises(InferenceServerException) as e:
            await grpc_client.infer("tiny", grpc_inputs(1, 2), parameters={"slo_ms": 5})
        assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        # 8 rows on fp32 only (max_accuracy_loss 0) need 200 ms: a client that waits 150 ms is told at once
        with pytest.raises(InferenceServerException) as e:
            await grpc_client.infer(
                "tiny", grpc_inputs(8, 3), parameters={"max_accuracy_loss": 0}, client_timeout=0.15
            )
        assert e.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        assert "client's deadline" in (e.value.message() or "")
    assert strict_gateway.metric("varigate_policy_rejections_total", reason="overloaded") == 2
    assert strict_gateway.metric("varigate_policy_rejections_total", reason="deadline") == 1
    assert strict_gateway.metric("varigate_slo_requests_total", result="missed") >= 3
