"""Seldon MLServer 1.7.1 as a peer, for real: installed by ``scripts/peers/mlserver.sh`` (inside the module
fixture; a failed install fails these tests), serving the tiny repository through
``loadtest.peers.mlserver_runtime`` on free loopback ports, answered by tritonclient and compared with
onnxruntime run here on the same ``model.onnx``.

What of Triton's protocol works against MLServer through tritonclient (each line is asserted below):

- gRPC ``ModelInfer`` (tensors in ``raw_input_contents`` / ``raw_output_contents``): works; live, ready,
  model ready and model metadata too. ``ModelConfig``: UNIMPLEMENTED.
- HTTP JSON tensors: work, and so does asking for binary *outputs* (MLServer ignores the request and
  answers JSON, which tritonclient reads).
- HTTP binary tensor extension for *inputs*: refused with 422 (MLServer parses the body as JSON only).
- gRPC ``ModelStreamInfer``: unusable with tritonclient. MLServer's proto streams ``ModelInferResponse``
  where Triton's streams ``ModelStreamInferResponse``; tritonclient reads field 1 (the model name) as
  ``error_message``, so every reply arrives as an error named after the model. Not tested here.
- Adaptive batching merges concurrent requests (asserted through the runtime's ``onnx_batch_rows``
  histogram on MLServer's metrics port) and splits the answers right when the requests share their
  sequence length; requests of different lengths merged into one batch all fail (see the runtime's
  docstring for the case where they are silently wrong instead).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from loadtest.cpu import alive
from loadtest.peers.mlserver import MLServerProcess, ensure_installed
from tests.fixtures.tinyrepo import VOCAB_SIZE, build_tiny_repository
from varigate.contract.layout import model_file

MODELS = ("tiny.fp32", "tiny.int8", "clf.fp32")
MAX_QUEUE_DELAY_US = 100_000  # a window wide enough that concurrent requests surely share a batch
MLSERVER_VERSION = "1.7.1"

Inputs = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def venv() -> Path:
    return ensure_installed()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_repository(tmp_path_factory.mktemp("repo"), max_queue_delay_us=MAX_QUEUE_DELAY_US)


@pytest.fixture(scope="module")
def server(
    venv: Path, repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MLServerProcess]:
    with MLServerProcess(repository, MODELS, tmp_path_factory.mktemp("mlserver"), venv=venv) as s:
        yield s


def _embedder_inputs(rng: np.random.Generator, rows: int, seq: int) -> Inputs:
    ids = rng.integers(1, VOCAB_SIZE, size=(rows, seq), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[:, seq - 1 :] = rng.integers(0, 2, size=(rows, 1))  # some rows padded at the end
    return {"input_ids": ids, "attention_mask": mask}


def _inputs_for(name: str, rng: np.random.Generator, rows: int = 3, seq: int = 5) -> Inputs:
    if name.startswith("clf."):
        return {"x": rng.normal(size=(rows, 4)).astype(np.float32)}
    return _embedder_inputs(rng, rows, seq)


def _local(repository: Path, name: str, inputs: Inputs) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model_file(repository / name)), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def _grpc_inputs(module: Any, inputs: Inputs) -> list[Any]:
    out = []
    for key, value in inputs.items():
        i = module.InferInput(key, list(value.shape), np_to_triton_dtype(value.dtype))
        i.set_data_from_numpy(value)
        out.append(i)
    return out


def _http_inputs(inputs: Inputs, binary: bool) -> list[httpclient.InferInput]:
    out = []
    for key, value in inputs.items():
        i = httpclient.InferInput(key, list(value.shape), np_to_triton_dtype(value.dtype))
        i.set_data_from_numpy(value, binary_data=binary)
        out.append(i)
    return out


def _batch_rows(server: MLServerProcess, model: str) -> tuple[float, float]:
    """(batches, rows) the runtime's ``onnx_batch_rows`` histogram has counted for ``model``."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    found = {"count": 0.0, "sum": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == "onnx_batch_rows":
            for sample in family.samples:
                if sample.labels.get("model_name") == model and sample.name.endswith(("_count", "_sum")):
                    found[sample.name.rsplit("_", 1)[1]] = sample.value
    return found["count"], found["sum"]


def test_install_is_idempotent_and_quick(venv: Path) -> None:
    started = time.monotonic()
    again = ensure_installed()
    warm_s = time.monotonic() - started
    assert again == venv
    assert warm_s < 2.0, f"a warm install took {warm_s:.2f} s"
    version = subprocess.run([str(venv / "bin" / "mlserver"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and MLSERVER_VERSION in version.stdout, version.stdout + version.stderr


def test_models_directory_follows_the_repository(server: MLServerProcess, repository: Path) -> None:
    settings = json.loads((server.models_dir / "settings.json").read_text())
    assert (settings["host"], settings["http_port"], settings["grpc_port"], settings["metrics_port"]) == (
        "127.0.0.1",
        server.http_port,
        server.grpc_port,
        server.metrics_port,
    )
    assert settings["parallel_workers"] == 1  # MLServer's default: the model runs in one worker process
    tiny = json.loads((server.models_dir / "tiny.fp32" / "model-settings.json").read_text())
    assert tiny["max_batch_size"] == 8 and tiny["max_batch_time"] == pytest.approx(MAX_QUEUE_DELAY_US / 1e6)
    assert Path(tiny["parameters"]["uri"]) == model_file(repository / "tiny.fp32").resolve()
    assert tiny["parameters"]["extra"] == {"intra_op_threads": 1, "allow_spinning": True}
    pids = server.pids()
    assert pids[0] == server.pid and len(pids) >= 2, pids  # the main process and its inference worker
    assert all(alive(p) for p in pids)


def test_grpc_outputs_equal_onnxruntime(server: MLServerProcess, repository: Path) -> None:
    rng = np.random.default_rng(1)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        for name in MODELS:
            assert client.is_model_ready(name)
            inputs = _inputs_for(name, rng)
            result = client.infer(name, _grpc_inputs(grpcclient, inputs))
            for output, expected in _local(repository, name, inputs).items():
                np.testing.assert_allclose(result.as_numpy(output), expected, rtol=1e-6, atol=1e-7)
        meta = client.get_model_metadata("tiny.fp32", as_json=True)
        assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask"]
        with pytest.raises(InferenceServerException, match="UNIMPLEMENTED"):
            client.get_model_config("tiny.fp32")
    finally:
        client.close()


def test_http_json_outputs_equal_onnxruntime(server: MLServerProcess, repository: Path) -> None:
    rng = np.random.default_rng(2)
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        assert client.is_server_ready()
        for name in MODELS:
            inputs = _inputs_for(name, rng)
            expected = _local(repository, name, inputs)
            for binary_outputs in (False, True):  # binary outputs asked for, JSON answered
                outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_outputs) for n in expected]
                result = client.infer(name, _http_inputs(inputs, binary=False), outputs=outputs)
                for output, want in expected.items():
                    np.testing.assert_allclose(result.as_numpy(output), want, rtol=1e-6, atol=1e-7)
    finally:
        client.close()


def test_http_binary_inputs_are_refused(server: MLServerProcess) -> None:
    inputs = _inputs_for("clf.fp32", np.random.default_rng(3))
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        with pytest.raises(InferenceServerException, match="422"):
            client.infer("clf.fp32", _http_inputs(inputs, binary=True))
    finally:
        client.close()


async def test_concurrent_requests_are_batched_and_answered_each(
    server: MLServerProcess, repository: Path
) -> None:
    rng = np.random.default_rng(4)
    rows = [1, 2, 1, 3, 1]  # different row counts, one sequence length: MLServer splits by rows
    requests = [_embedder_inputs(rng, n, 6) for n in rows]
    batches_before, rows_before = _batch_rows(server, "tiny.int8")
    client = grpcaio.InferenceServerClient(server.grpc_url)
    try:
        results = await asyncio.gather(
            *(client.infer("tiny.int8", _grpc_inputs(grpcaio, r)) for r in requests)
        )
    finally:
        await client.close()
    for request, result in zip(requests, results, strict=True):
        for output, expected in _local(repository, "tiny.int8", request).items():
            np.testing.assert_allclose(result.as_numpy(output), expected, rtol=1e-6, atol=1e-7)
    batches, batched_rows = _batch_rows(server, "tiny.int8")
    assert batched_rows - rows_before == sum(rows)
    assert batches - batches_before < len(rows), "no two of the concurrent requests shared a batch"


async def test_different_lengths_in_one_batch_fail_the_batch(server: MLServerProcess) -> None:
    rng = np.random.default_rng(5)
    requests = [_embedder_inputs(rng, 1, 4), _embedder_inputs(rng, 1, 6)]
    client = grpcaio.InferenceServerClient(server.grpc_url)
    try:
        results = await asyncio.gather(
            *(client.infer("tiny.fp32", _grpc_inputs(grpcaio, r)) for r in requests), return_exceptions=True
        )
    finally:
        await client.close()
    for result in results:
        assert isinstance(result, InferenceServerException), result
        assert "adaptive batching concatenated requests of different shapes" in str(result)


def test_stop_ends_every_process(venv: Path, repository: Path, tmp_path: Path) -> None:
    server = MLServerProcess(repository, ["clf.fp32"], tmp_path, venv=venv).start()
    try:
        pids = server.pids()
        assert len(pids) >= 2, pids  # the main process and its inference worker
    finally:
        code = server.stop()
    assert code == 0, server.log()[-3000:]
    assert [p for p in pids if alive(p)] == []
