"""The real gateway over HTTP, as a Triton user drives it: tritonclient.http (sync and asyncio) and raw
curl-style requests for what a client library would never send."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.e2e.support import GatewayProcess, tiny_batch
from tests.fixtures.tinyrepo import EMBED_DIM, tiny_reference


def tiny_inputs(ids: np.ndarray, mask: np.ndarray, binary: bool = True) -> list[th.InferInput]:
    out = []
    for name, arr in (("input_ids", ids), ("attention_mask", mask)):
        i = th.InferInput(name, list(arr.shape), "INT64")
        i.set_data_from_numpy(arr, binary_data=binary)
        out.append(i)
    return out


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[th.InferenceServerClient]:
    with th.InferenceServerClient(gateway.http) as c:
        yield c


def test_health_and_metadata(client: th.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "varigate"
    assert {"binary_tensor_data", "model_repository", "statistics", "model_configuration"} <= set(
        meta["extensions"]
    )
    for name in ("tiny", "tiny.fp32", "tiny.int8", "clf", "clf.fp32"):
        assert client.is_model_ready(name), name
    assert client.is_model_ready("tiny.int8", "1") and not client.is_model_ready("tiny.int8", "7")
    assert not client.is_model_ready("nonexistent")
    tiny = client.get_model_metadata("tiny")
    assert tiny["inputs"] == [
        {"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]},
    ]
    assert {"name": "embedding", "datatype": "FP32", "shape": [-1, EMBED_DIM]} in tiny["outputs"]
    assert client.get_model_metadata("tiny.int8", "1")["versions"] == ["1"]
    config = client.get_model_config("tiny.int8")
    assert config["name"] == "tiny.int8" and config["max_batch_size"] == 8
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    assert client.get_model_config("clf.fp32", "1")["input"][0]["name"] == "x"


def test_infer_binary_picks_the_most_accurate_variant(gateway: GatewayProcess) -> None:
    ids, mask = tiny_batch(3, 7, seed=1, pad=2)
    with th.InferenceServerClient(gateway.http) as c:
        result = c.infer("tiny", tiny_inputs(ids, mask), outputs=[th.InferRequestedOutput("embedding")])
    doc = result.get_response()
    assert doc["model_name"] == "tiny.fp32" and doc["parameters"]["varigate_variant"] == "tiny.fp32"
    assert [o["name"] for o in doc["outputs"]] == ["embedding"]
    np.testing.assert_allclose(result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)


def test_pinned_variant_json_tensors_and_header(gateway: GatewayProcess) -> None:
    ids, mask = tiny_batch(2, 5, seed=2)
    with th.InferenceServerClient(gateway.http) as c:
        binary = c.infer("tiny.int8", tiny_inputs(ids, mask))
        as_json = c.infer(
            "tiny.int8",
            tiny_inputs(ids, mask, binary=False),
            outputs=[
                th.InferRequestedOutput("embedding", binary_data=False),
                th.InferRequestedOutput("token_embeddings"),
            ],
        )
    expected = tiny_reference(ids, mask, variant="int8")
    np.testing.assert_allclose(binary.as_numpy("embedding"), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(as_json.as_numpy("embedding"), binary.as_numpy("embedding"))
    np.testing.assert_array_equal(as_json.as_numpy("token_embeddings"), binary.as_numpy("token_embeddings"))
    outputs = {o["name"]: o for o in as_json.get_response()["outputs"]}
    assert (
        "data" in outputs["embedding"]
        and outputs["token_embeddings"]["parameters"]["binary_data_size"] == 2 * 5 * 8 * 4
    )
    body = {
        "id": "curl-1",
        "inputs": [
            {"name": "input_ids", "datatype": "INT64", "shape": [2, 5], "data": ids.tolist()},  # nested
            {
                "name": "attention_mask",
                "datatype": "INT64",
                "shape": [2, 5],
                "data": mask.ravel().tolist(),
            },  # flat
        ],
        "outputs": [{"name": "embedding"}],
    }
    r = httpx.post(f"http://{gateway.http}/v2/models/tiny.int8/versions/1/infer", json=body)
    assert r.status_code == 200 and r.headers["varigate-variant"] == "tiny.int8"
    doc = r.json()
    assert doc["id"] == "curl-1" and doc["model_version"] == "1"
    np.testing.assert_allclose(
        np.array(doc["outputs"][0]["data"]).reshape(2, 8), expected, rtol=1e-5, atol=1e-6
    )


def test_classifier(client: th.InferenceServerClient) -> None:
    x = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    i = th.InferInput("x", [4, 4], "FP32")
    i.set_data_from_numpy(x)
    result = client.infer("clf", [i])
    probs, logits = result.as_numpy("probs"), result.as_numpy("logits")
    assert probs.shape == (4, 3) and logits.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=1), logits.argmax(axis=1))


async def test_aio_client_concurrent(gateway: GatewayProcess) -> None:
    import asyncio

    async with tha.InferenceServerClient(gateway.http) as c:
        assert await c.is_server_ready()
        batches = [tiny_batch(1 + i % 3, 3 + i, seed=10 + i) for i in range(6)]
        results = await asyncio.gather(
            *(c.infer("tiny.fp32", tiny_inputs(ids, mask)) for ids, mask in batches)
        )
        stats = await c.get_inference_statistics("tiny.fp32")
        every = await c.get_inference_statistics()
    for (ids, mask), result in zip(batches, results, strict=True):
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )
    s = stats["model_stats"][0]
    assert s["name"] == "tiny.fp32" and s["inference_count"] >= sum(ids.shape[0] for ids, _ in batches)
    assert s["inference_stats"]["success"]["count"] >= 6
    assert s["batch_stats"] and all(b["compute_infer"]["count"] > 0 for b in s["batch_stats"])
    assert {m["name"] for m in every["model_stats"]} == {"tiny.fp32", "tiny.int8", "clf.fp32"}


def _post(gateway: GatewayProcess, model: str, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"http://{gateway.http}/v2/models/{model}/infer", content=content)


def _tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


GOOD_IDS = _tensor("input_ids", "INT64", [1, 3], [1, 2, 3])
GOOD_MASK = _tensor("attention_mask", "INT64", [1, 3], [1, 1, 1])


@pytest.mark.parametrize(
    ("model", "body", "status", "needles"),
    [
        ("tiny", b'{"inputs": [', 400, ["malformed JSON"]),
        (
            "tiny",
            {"inputs": [_tensor("input_idz", "INT64", [1, 3], [1, 2, 3]), GOOD_MASK]},
            400,
            ["'input_idz'", "expected inputs"],
        ),
        (
            "tiny",
            {"inputs": [_tensor("input_ids", "INT32", [1, 3], [1, 2, 3]), GOOD_MASK]},
            400,
            ["'input_ids'", "expected datatype INT64, got INT32"],
        ),
        (
            "tiny",
            {"inputs": [_tensor("input_ids", "INT64", [1, 1, 3], [1, 2, 3]), GOOD_MASK]},
            400,
            ["'input_ids'", "expected shape [-1, -1], got [1, 1, 3]"],
        ),
        ("tiny", {"inputs": [GOOD_IDS]}, 400, ["missing ['attention_mask']"]),
        (
            "tiny",
            {"inputs": [_tensor("input_ids", "BYTES", [1, 2], ["a", "b"]), GOOD_MASK]},
            400,
            ["expected datatype INT64, got BYTES"],
        ),
        (
            "tiny",
            {"inputs": [_tensor("input_ids", "INT64", [1, 4], [1, 2, 3]), GOOD_MASK]},
            400,
            ["'input_ids'", "has 3 elements, but shape [1, 4] needs 4"],
        ),
        ("tiny", {"inputs": [GOOD_IDS, GOOD_MASK], "outputs": [{"name": "pooled"}]}, 400, ["'pooled'"]),
        (
            "tiny",
            {
                "inputs": [
                    _tensor("input_ids", "INT64", [9, 1], list(range(9))),
                    _tensor("attention_mask", "INT64", [9, 1], [1] * 9),
                ]
            },
            400,
            ["batch-size must be in [1, 8]"],
        ),
        ("nonexistent", {"inputs": [GOOD_IDS, GOOD_MASK]}, 404, ["'nonexistent'"]),
        ("tiny.fp32/versions/7", {"inputs": [GOOD_IDS, GOOD_MASK]}, 404, ["'tiny.fp32'", "'7'"]),
    ],
)
def test_bad_requests_name_the_problem(
    gateway: GatewayProcess, model: str, body: object, status: int, needles: list[str]
) -> None:
    r = _post(gateway, model, body)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    for needle in needles:
        assert needle in message
    ok = _post(gateway, "tiny", {"inputs": [GOOD_IDS, GOOD_MASK]})  # the gateway goes on
    assert ok.status_code == 200 and len(ok.json()["outputs"][0]["data"]) == EMBED_DIM


def test_body_over_the_limit_is_413(gateway: GatewayProcess) -> None:
    ids = np.ones((1, 140_000), np.int64)  # 2 x 1.1 MB of binary tensors against the 1 MiB limit
    with th.InferenceServerClient(gateway.http) as c:
        with pytest.raises(InferenceServerException) as e:
            c.infer("tiny", tiny_inputs(ids, ids))
        assert e.value.status() == "413" and "exceeds the limit of 1048576 bytes" in e.value.message()
        small = c.infer("tiny", tiny_inputs(ids[:, :100], ids[:, :100]))
    np.testing.assert_allclose(
        small.as_numpy("embedding"), tiny_reference(ids[:, :100], ids[:, :100]), rtol=1e-5
    )


def test_backend_failure_fails_only_its_batch(gateway: GatewayProcess) -> None:
    from tests.fixtures.tinyrepo import POISON_ID

    bad = _post(
        gateway,
        "tiny.fp32",
        {
            "inputs": [
                _tensor("input_ids", "INT64", [1, 1], [POISON_ID]),
                _tensor("attention_mask", "INT64", [1, 1], [1]),
            ]
        },
    )
    assert bad.status_code == 500 and bad.json()["error"]
    text = httpx.get(gateway.metrics_url).text
    assert 'nv_inference_request_failure{model="tiny.fp32"' in text
    ok = _post(gateway, "tiny.fp32", {"inputs": [GOOD_IDS, GOOD_MASK]})
    assert ok.status_code == 200
