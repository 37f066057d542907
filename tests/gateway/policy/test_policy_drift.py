"""Live accuracy drift, seen from outside: shadow comparisons never change an answer and respect the cost
cap, a corrupted variant that claims a good card is caught and demoted (by the sequential test, within a
few shadowed requests) before the policy would reach for it, and ground-truth labels turn into live
accuracy."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import tritonclient.http as th
import tritonclient.http.aio as tha

from tests.e2e.support import tiny_batch
from tests.fixtures.tinyrepo import tiny_reference
from tests.gateway.policy.support import GatewayProcess, one, open_loop, share

# The metric names a dashboard would chart.
COMPARED = "varigate_shadow_requests_total"


async def test_shadow_comparisons_change_no_answer(drift_gateway: GatewayProcess) -> None:
    """Requests pinned to int8 are all sampled for a shadow on fp32 (shadow fraction 1): each is compared
    or, over the cost cap (a shadow on fp32 costs several int8 requests), skipped as busy. Each client
    still gets int8's own answer, bit for bit what int8 computes, not fp32's (they differ by ~6e-3)."""
    labels = {"variant": "tiny.int8"}
    before = {o: drift_gateway.metric(COMPARED, **labels, outcome=o) for o in ("compared", "busy")}
    async with tha.InferenceServerClient(drift_gateway.http) as client:
        for seed in range(12):
            reply = await one(client, "tiny.int8", seed, 0.0, slo_ms=1000)
            ids, mask = tiny_batch(1, 4, seed=seed)
            assert reply.variant == "tiny.int8" and reply.output is not None
            np.testing.assert_allclose(reply.output, tiny_reference(ids, mask, "int8"), rtol=0, atol=1e-6)
            assert np.abs(reply.output - tiny_reference(ids, mask, "fp32")).max() > 1e-4
    deadline = time.monotonic() + 10
    while True:  # the last shadows finish after their requests were answered
        seen = {o: drift_gateway.metric(COMPARED, **labels, outcome=o) - before[o] for o in before}
        if seen["compared"] + seen["busy"] >= 12 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert seen["compared"] >= 1 and seen["compared"] + seen["busy"] == 12
    assert drift_gateway.metric("varigate_live_agreement_ratio", variant="tiny.int8") > 0.999
    assert drift_gateway.metric("varigate_variant_demoted", variant="tiny.int8") == 0


async def test_a_corrupted_variant_is_demoted_before_the_policy_reaches_for_it(
    drift_gateway: GatewayProcess,
) -> None:
    """``tiny.bad`` claims 0.5 % loss (better than int8's 1 %) and more speed, but computes garbage. Light
    traffic stays on fp32, whose requests probe the compressed variants; once ``bad`` is demoted, a burst
    steps down to int8 and never to ``bad``."""
    deadline = time.monotonic() + 20
    async with tha.InferenceServerClient(drift_gateway.http, conn_limit=300) as client:
        while drift_gateway.metric("varigate_demotions_total", variant="tiny.bad") < 1:
            assert time.monotonic() < deadline, "tiny.bad was never demoted"
            await open_loop(client, "tiny", [(0.5, 10)])
        burst = await open_loop(client, "tiny", [(2, 50)], 4)  # 2.5x what fp32 runs in two slots
    assert share(burst, "tiny.int8") >= 0.7
    assert not [r for r in burst if r.variant == "tiny.bad"]
    assert drift_gateway.metric("varigate_variant_demoted", variant="tiny.bad") == 1
    assert drift_gateway.metric("varigate_accuracy_drift_ratio", variant="tiny.bad") > 0.5
    assert drift_gateway.metric("varigate_demotions_total", variant="tiny.int8") == 0
    assert "tiny.bad version 1 demoted" in drift_gateway.log()


async def test_labels_become_live_accuracy(drift_gateway: GatewayProcess) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    predicted = []
    async with tha.InferenceServerClient(drift_gateway.http) as client:
        for i in range(6):
            item = th.InferInput("x", [1, 4], "FP32")
            item.set_data_from_numpy(x[i : i + 1])
            result = await client.infer("clf", [item], request_id=f"req-{i}")
            predicted.append(int(np.argmax(result.as_numpy("logits"))))
    truth = [p if i < 4 else (p + 1) % 3 for i, p in enumerate(predicted)]  # 4 of 6 right
    labels = [{"id": f"req-{i}", "label": t} for i, t in enumerate(truth)] + [{"id": "never", "label": 0}]
    url = f"http://{drift_gateway.http}/v2/models/clf/labels"
    async with httpx.AsyncClient() as raw:
        r = await raw.post(url, json={"labels": labels})
        assert r.status_code == 200 and r.json() == {"accepted": 6, "unknown": ["never"]}
        r = await raw.post(url, json={"labels": [{"id": "req-0", "label": "cat"}]})
        assert r.status_code == 400
    accuracy = drift_gateway.metric("varigate_live_accuracy_ratio", model="clf", variant="clf.fp32")
    assert abs(accuracy - 4 / 6) < 1e-9
    assert drift_gateway.metric("varigate_labels_total", model="clf", variant="clf.fp32") == 6
