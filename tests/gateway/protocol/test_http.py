"""The HTTP adapter on the real gateway, where tests/e2e does not go: binary and JSON inputs mixed in one
request, binary responses asked for by ``binary_data_output``, compressed bodies, bad requests answered while
a good one is in flight, the repository index and unload bodies."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Mapping
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc.aio as tga
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from gateway.main import Gateway
from tests.e2e.support import tiny_batch
from tests.e2e.test_e2e_http import tiny_inputs
from tests.e2e.test_e2e_scheduling import http_inputs
from tests.fixtures.tinyrepo import tiny_reference
from tests.gateway.conftest import Gate

from .conftest import LIMIT_BYTES, grpc_url, http_url, running

HEADER = "Inference-Header-Content-Length"


def binary_request(doc: Mapping[str, object], *arrays: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A body with a JSON header and the arrays as binary tensor data, and its headers."""
    head = orjson.dumps(doc)
    return head + b"".join(a.tobytes() for a in arrays), {HEADER: str(len(head))}


async def test_binary_and_json_inputs_in_one_request(gw: Gateway) -> None:
    ids, mask = tiny_batch(2, 5, seed=1, pad=2)
    binary_ids, json_mask = tiny_inputs(ids, mask, binary=True)[0], tiny_inputs(ids, mask, binary=False)[1]
    async with tha.InferenceServerClient(http_url(gw)) as client:
        result = await client.infer("tiny", [binary_ids, json_mask], request_id="mixed")
    assert result.get_response()["id"] == "mixed"
    np.testing.assert_allclose(result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)


async def test_binary_data_output_and_the_response_headers(gw: Gateway) -> None:
    x = np.random.default_rng(4).normal(size=(2, 4)).astype(np.float32)
    tensor = {"name": "x", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": x.nbytes}}
    async with httpx.AsyncClient(base_url=f"http://{http_url(gw)}") as raw:
        content, headers = binary_request({"inputs": [tensor], "parameters": {"binary_data_output": True}}, x)
        binary = await raw.post("/v2/models/clf/versions/1/infer", content=content, headers=headers)
        as_json = await raw.post(
            "/v2/models/clf/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}]},
        )
    assert binary.status_code == 200 and binary.headers["content-type"] == "application/octet-stream"
    assert binary.headers["varigate-variant"] == "clf.fp32"
    n = int(binary.headers[HEADER])
    doc = orjson.loads(binary.content[:n])
    assert [(o["name"], o["shape"], o["parameters"]) for o in doc["outputs"]] == [
        ("logits", [2, 3], {"binary_data_size": 24}),
        ("probs", [2, 3], {"binary_data_size": 24}),
    ]
    logits, probs = np.frombuffer(binary.content[n:], "<f4").reshape(2, 2, 3)
    assert as_json.headers["content-type"] == "application/json" and HEADER.lower() not in as_json.headers
    outputs = {o["name"]: np.array(o["data"], np.float32).reshape(2, 3) for o in as_json.json()["outputs"]}
    np.testing.assert_array_equal(logits, outputs["logits"])
    np.testing.assert_array_equal(probs, outputs["probs"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


async def test_compressed_requests(gw: Gateway) -> None:
    ids, mask = tiny_batch(2, 6, seed=5)

    def call(algorithm: str) -> th.InferResult:
        with th.InferenceServerClient(http_url(gw)) as client:
            return client.infer("tiny", http_inputs(ids, mask), request_compression_algorithm=algorithm)

    for algorithm in ("gzip", "deflate"):
        result = await asyncio.to_thread(call, algorithm)
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )
    async with httpx.AsyncClient(base_url=f"http://{http_url(gw)}") as raw:
        bomb = gzip.compress(b" " * (2 * LIMIT_BYTES))  # small on the wire, 2 MiB inflated
        r = await raw.post("/v2/models/tiny/infer", content=bomb, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decompressed request body exceeds the limit" in r.json()["error"]
        r = await raw.post("/v2/models/tiny/infer", content=b"not gzip", headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400 and "not valid gzip data" in r.json()["error"]
        r = await raw.post(
            "/v2/models/tiny/infer", content=zlib.compress(b"{}"), headers={"Content-Encoding": "br"}
        )
        assert r.status_code == 501 and "Content-Encoding 'br' is not supported" in r.json()["error"]


async def test_bad_requests_are_answered_while_a_good_one_runs(text_repo: Path, gate: Gate) -> None:
    ids, mask = tiny_batch(1, 4, seed=6)
    short_head = {
        "inputs": [
            {"name": "input_ids", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}}
        ]
    }
    async with (
        running(text_repo, gate=gate) as gw,
        tha.InferenceServerClient(http_url(gw)) as client,
        httpx.AsyncClient(base_url=f"http://{http_url(gw)}") as raw,
    ):
        good = asyncio.create_task(client.infer("tiny.fp32", http_inputs(ids, mask)))
        await gate.entered()  # the good request is running in the backend, and stays there
        malformed = await raw.post("/v2/models/tiny/infer", content=b'{"inputs": [')
        content, headers = binary_request(short_head, np.zeros(1, np.int32))
        short = await raw.post("/v2/models/tiny/infer", content=content, headers=headers)
        unknown = await raw.get("/v2/nothing/here")
        shm = await raw.post("/v2/systemsharedmemory/region/r0/register", json={})
        assert not good.done()
        gate.open()
        result = await good
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
    assert short.status_code == 400 and "binary_data_size 8 exceeds the 4 bytes" in short.json()["error"]
    assert unknown.status_code == 404 and "GET /v2/nothing/here" in unknown.json()["error"]
    assert shm.status_code == 501 and "shared-memory extension is not supported" in shm.json()["error"]
    np.testing.assert_allclose(result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)


async def test_repository_index_and_unload_bodies(text_repo: Path) -> None:
    async with (
        running(text_repo, model_control_mode="explicit", load_model=["tiny.fp32", "tiny.int8"]) as gw,
        httpx.AsyncClient(base_url=f"http://{http_url(gw)}") as raw,
        tga.InferenceServerClient(grpc_url(gw)) as grpc_,
    ):
        everything = (await raw.post("/v2/repository/index")).json()
        ready = (await raw.post("/v2/repository/index", json={"ready": True})).json()
        bad = await raw.post("/v2/repository/index", json={"ready": "maybe"})
        refused = await raw.post(
            "/v2/repository/models/tiny.int8/unload", json={"parameters": {"unload_dependents": "yes"}}
        )
        still = await raw.get("/v2/models/tiny.int8/ready")
        unloaded = await raw.post(
            "/v2/repository/models/tiny.int8/unload", json={"parameters": {"unload_dependents": True}}
        )
        after = (await raw.post("/v2/repository/index", json={})).json()
        grpc_index = await grpc_.get_model_repository_index(as_json=True)
        with pytest.raises(InferenceServerException) as missing:
            await grpc_.load_model("nope")
    assert {m["name"]: m["state"] for m in everything} == {
        "clf.fp32": "UNAVAILABLE",
        "text.base": "UNAVAILABLE",
        "tiny.fp32": "READY",
        "tiny.int8": "READY",
    }
    assert {"name": "clf.fp32", "state": "UNAVAILABLE", "reason": "unloaded"} in everything
    assert sorted(m["name"] for m in ready) == ["tiny.fp32", "tiny.int8"]
    assert bad.status_code == 400 and "ready" in bad.json()["error"]
    assert (
        refused.status_code == 400
        and "unload_dependents must be true or false, got 'yes'" in refused.json()["error"]
    )
    assert still.status_code == 200 and unloaded.status_code == 200
    assert {m["name"]: m["state"] for m in after}["tiny.int8"] == "UNAVAILABLE"
    assert {m["name"]: m["state"] for m in grpc_index["models"]}["tiny.int8"] == "UNAVAILABLE"
    assert missing.value.status() == "StatusCode.NOT_FOUND" and "'nope'" in missing.value.message()
