"""Prometheus metrics from a real service: native histograms and Triton-compatible counters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.errors import InvalidInput, Overloaded
from gateway.core.types import InferRequest
from gateway.metrics import Metrics

from .conftest import Gate, serving, tiny_request

IDS = np.array([[1, 2, 3]], dtype=np.int64)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            # the parser names every counter sample ``_total``; Triton's counters have no suffix
            name = (
                family.name if family.name.startswith("nv_") and s.name == family.name + "_total" else s.name
            )
            out[(name, tuple(sorted(s.labels.items())))] = s.value
    return out


def triton(name: str, model: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"model": model, "version": "1", **labels}.items()))


async def test_request_batch_and_failure_metrics(build: Callable[..., Path], gate: Gate) -> None:
    metrics = Metrics()
    repo = build(max_batch_size=4, max_queue_size=1)
    async with serving(repo, observer=metrics, **gate.options) as service:
        first = asyncio.ensure_future(service.infer(tiny_request("tiny", IDS)))
        await gate.entered()
        queued = asyncio.ensure_future(service.infer(tiny_request("tiny", IDS, protocol="grpc")))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await service.infer(tiny_request("tiny", IDS))
        with pytest.raises(InvalidInput):
            await service.infer(InferRequest("tiny.fp32", tiny_request("tiny.fp32", IDS).inputs[:1]))
        assert samples(metrics)[triton("nv_inference_pending_request_count", "tiny.fp32")] == 1
        gate.open()
        await asyncio.gather(first, queued)
    got = samples(metrics)
    assert got[triton("nv_inference_request_success", "tiny.fp32")] == 2
    assert got[triton("nv_inference_request_failure", "tiny.fp32", reason="REJECTED")] == 1
    assert got[triton("nv_inference_request_failure", "tiny.fp32", reason="OTHER")] == 1
    assert got[triton("nv_inference_count", "tiny.fp32")] == 2
    assert got[triton("nv_inference_exec_count", "tiny.fp32")] == 2
    assert (
        got[triton("nv_inference_request_duration_us", "tiny.fp32")]
        > got[triton("nv_inference_compute_infer_duration_us", "tiny.fp32")]
        > 0
    )
    assert got[triton("nv_inference_queue_duration_us", "tiny.fp32")] > 0
    assert got[triton("nv_inference_pending_request_count", "tiny.fp32")] == 0
    mv = {"model": "tiny", "variant": "tiny.fp32"}
    assert (
        got[
            (
                "varigate_requests_total",
                tuple(sorted({**mv, "protocol": "http", "outcome": "success"}.items())),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "varigate_requests_total",
                tuple(sorted({**mv, "protocol": "grpc", "outcome": "success"}.items())),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "varigate_requests_total",
                tuple(sorted({**mv, "protocol": "http", "outcome": "rejected"}.items())),
            )
        ]
        == 1
    )
    assert (
        got[("varigate_request_duration_seconds_count", tuple(sorted({**mv, "protocol": "http"}.items())))]
        == 1
    )
    assert (
        got[
            (
                "varigate_request_duration_seconds_bucket",
                tuple(sorted({**mv, "protocol": "http", "le": "10.0"}.items())),
            )
        ]
        == 1
    )
    assert ("varigate_queue_duration_seconds_bucket", tuple(sorted({**mv, "le": "0.0005"}.items()))) in got
    assert got[("varigate_batch_size_sum", tuple(sorted(mv.items())))] == 2
    assert got[("varigate_batches_total", tuple(sorted({**mv, "outcome": "success"}.items())))] == 2
    assert got[("varigate_model_ready", (("model", "tiny.fp32"), ("version", "1")))] == 0  # unloaded at close


async def test_each_app_has_its_own_registry_and_serves_metrics_over_asgi(tiny_repo: Path) -> None:
    one, two = Metrics(), Metrics()
    async with serving(tiny_repo, observer=one) as service:
        await service.infer(tiny_request("tiny.int8", IDS))
        assert samples(one)[("varigate_model_ready", (("model", "tiny.int8"), ("version", "1")))] == 1
    assert triton("nv_inference_request_success", "tiny.int8") in samples(one)
    assert triton("nv_inference_request_success", "tiny.int8") not in samples(two)
    transport = httpx.ASGITransport(app=one.asgi_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
        response = await client.get("/metrics")
        missing = await client.get("/other")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    assert "# TYPE nv_inference_request_success counter" in response.text
    assert 'nv_inference_request_success{model="tiny.int8",version="1"} 1.0' in response.text
    assert missing.status_code == 404
