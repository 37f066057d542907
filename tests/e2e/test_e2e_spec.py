"""Answers by the spec, checked with two peers side by side: KServe's own v2 SDK (``kserve``) and
tritonclient. Health bodies follow the Open Inference Protocol, a model that is not ready gets 4xx, and
inputs that share a dimension must agree before a request may join a batch (400 / INVALID_ARGUMENT naming
both inputs, never a backend error)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.e2e.support import ROOT, GatewayProcess, infer_inputs, run_gateway, tiny_batch
from tests.fixtures.tinyrepo import tiny_reference


def kserve_probe(gw: GatewayProcess, *models: str) -> dict[str, Any]:
    """What KServe's SDK says of ``gw`` (in a process of its own: see ``tests.peers.kserve_probe``)."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.peers.kserve_probe", gw.http, gw.grpc, *models],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def explicit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Explicit control mode with only tiny.fp32 loaded: tiny.int8 is in the repository but not ready."""
    args = ["--model-control-mode", "explicit", "--load-model", "tiny.fp32", "--no-strict-readiness"]
    yield from run_gateway(tmp_path_factory.mktemp("explicit"), args)


def test_health_bodies_follow_the_open_inference_protocol(gateway: GatewayProcess) -> None:
    base = f"http://{gateway.http}"
    assert httpx.get(f"{base}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{base}/v2/health/ready").json() == {"ready": True}
    ready = httpx.get(f"{base}/v2/models/tiny/ready")
    assert ready.status_code == 200 and ready.json() == {"name": "tiny", "ready": True}
    missing = httpx.get(f"{base}/v2/models/nonexistent/ready")
    assert missing.status_code == 404 and "'nonexistent'" in missing.json()["error"]


def test_kserve_sdk_and_tritonclient_agree(gateway: GatewayProcess) -> None:
    seen = kserve_probe(gateway, "tiny", "tiny.int8", "nonexistent")
    assert seen == {
        "rest_live": True,
        "rest_ready": True,
        "grpc_live": True,
        "grpc_ready": True,
        "rest_model_ready:tiny": True,
        "grpc_model_ready:tiny": True,
        "rest_model_ready:tiny.int8": True,
        "grpc_model_ready:tiny.int8": True,
        "rest_model_ready:nonexistent": False,
        "grpc_model_ready:nonexistent": False,
    }
    # tritonclient, sync and aio, over the same endpoints: the JSON bodies change nothing for it.
    with th.InferenceServerClient(gateway.http) as c:
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("tiny")
        assert not c.is_model_ready("nonexistent")


async def test_aio_tritonclient_reads_health_bodies_without_leaking(gateway: GatewayProcess) -> None:
    async with tha.InferenceServerClient(gateway.http) as ac:
        for _ in range(20):  # an unread body would leak a pooled connection per call
            assert await ac.is_server_live() and await ac.is_server_ready()
        ids, mask = tiny_batch(2, 5, seed=3)
        result = await ac.infer("tiny", infer_inputs(tha, ids, mask))
        np.testing.assert_allclose(result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5)


def test_a_model_that_is_not_ready_gets_4xx(explicit: GatewayProcess) -> None:
    base = f"http://{explicit.http}"
    not_ready = httpx.get(f"{base}/v2/models/tiny.int8/ready")
    assert not_ready.status_code == 400, not_ready.text
    body = not_ready.json()
    assert body["ready"] is False and body["name"] == "tiny.int8" and "'tiny.int8'" in body["error"]
    assert httpx.get(f"{base}/v2/models/tiny.fp32/ready").status_code == 200
    seen = kserve_probe(explicit, "tiny.int8", "tiny.fp32")
    assert seen["rest_model_ready:tiny.int8"] is False and seen["grpc_model_ready:tiny.int8"] is False
    assert seen["rest_model_ready:tiny.fp32"] is True and seen["grpc_model_ready:tiny.fp32"] is True
    with th.InferenceServerClient(explicit.http) as c:
        assert not c.is_model_ready("tiny.int8") and c.is_model_ready("tiny.fp32")
    with tg.InferenceServerClient(explicit.grpc) as gc:
        assert not gc.is_model_ready("tiny.int8") and gc.is_model_ready("tiny.fp32")


@pytest.mark.parametrize("pinned", ["tiny", "tiny.fp32"])
def test_inputs_sharing_a_dimension_must_agree(gateway: GatewayProcess, pinned: str) -> None:
    ids, _ = tiny_batch(1, 6, seed=1)
    _, mask = tiny_batch(1, 4, seed=1)
    with th.InferenceServerClient(gateway.http) as c:
        with pytest.raises(InferenceServerException) as e:
            c.infer(pinned, infer_inputs(th, ids, mask))
        assert e.value.status() == "400"
        message = e.value.message()
        assert "'input_ids'" in message and "'attention_mask'" in message and "6" in message
    with tg.InferenceServerClient(gateway.grpc) as g:
        with pytest.raises(InferenceServerException) as ge:
            g.infer(pinned, infer_inputs(tg, ids, mask))
        assert ge.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "'input_ids'" in ge.value.message() and "'attention_mask'" in ge.value.message()
        good_ids, good_mask = tiny_batch(1, 6, seed=1)
        ok = g.infer(pinned, infer_inputs(tg, good_ids, good_mask))
        np.testing.assert_allclose(ok.as_numpy("embedding"), tiny_reference(good_ids, good_mask), rtol=1e-5)


def test_empty_variable_dimension_is_refused(gateway: GatewayProcess) -> None:
    ids = np.zeros((1, 0), np.int64)
    with tg.InferenceServerClient(gateway.grpc) as g:
        with pytest.raises(InferenceServerException) as e:
            g.infer("tiny", infer_inputs(tg, ids, ids))
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "size 0" in e.value.message()


def test_unknown_model_is_refused_before_its_tensors_are_read(gateway: GatewayProcess) -> None:
    """A request for a model the repository does not have is answered NOT_FOUND at once, however large
    the tensors it declares."""
    channel = grpc.insecure_channel(gateway.grpc)
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pbg

    stub = pbg.GRPCInferenceServiceStub(channel)
    msg = pb.ModelInferRequest(model_name="nonexistent")
    msg.inputs.add(name="x", datatype="BYTES", shape=[2**40])
    msg.raw_input_contents.append(b"\0\0\0\0")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(msg, timeout=10)
    assert time.monotonic() - started < 1.0
    assert e.value.code() is grpc.StatusCode.NOT_FOUND and "'nonexistent'" in (e.value.details() or "")
    msg.model_name = "tiny"
    with pytest.raises(grpc.RpcError) as e2:
        stub.ModelInfer(msg, timeout=10)
    assert e2.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "'x'" in (e2.value.details() or "")
    channel.close()
