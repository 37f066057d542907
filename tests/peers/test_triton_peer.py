"""A real NVIDIA tritonserver (PyPI's nvidia-pytriton wheel, Python backend) on loopback, serving the
Python-backend form (``varigate triton-repo``) of the tiny repository: over gRPC and HTTP its outputs equal
local onnxruntime on the same model.onnx — the check that caught a stub fed all-zero tensors.

The install runs here (``ensure_installed``, idempotent: the first run downloads ~60 MB and takes about a
minute; later ones return at once). An install that fails fails these tests.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http.aio as http_aio
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from loadtest.cpu import alive, descendants
from loadtest.peers.triton import TritonInstall, TritonServer, ensure_installed
from tests.e2e.support import tiny_batch
from tests.fixtures.tinyrepo import POISON_ID, build_tiny_repository
from varigate import cli, triton_model
from varigate.triton_repo import write_python_backend_repo

INT8_DELAY_US = 5_000_000  # tiny.int8 waits for a full batch (8 rows dispatch it at once)
Feeds = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def install() -> TritonInstall:
    return ensure_installed()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny repository plus ``clf.nobatch``: the classifier with ``max_batch_size: 0``."""
    src = build_tiny_repository(tmp_path_factory.mktemp("triton") / "src")
    shutil.copytree(src / "clf.fp32", src / "clf.nobatch")
    path = src / "clf.nobatch" / "config.pbtxt"
    cfg = text_format.Parse(path.read_text(), mc.ModelConfig())
    cfg.name, cfg.max_batch_size = "clf.nobatch", 0
    cfg.ClearField("dynamic_batching")
    for t in (*cfg.input, *cfg.output):
        t.dims.insert(0, -1)
    path.write_text(text_format.MessageToString(cfg))
    return src


@pytest.fixture(scope="module")
def triton(install: TritonInstall, source: Path) -> Iterator[TritonServer]:
    repo = source.parent / "python-backend"
    write_python_backend_repo(source, repo)
    write_python_backend_repo(source, repo, ["tiny.int8"], max_queue_delay_us=INT8_DELAY_US)
    server = TritonServer(install, repo, source.parent / "triton.log")
    try:
        yield server.start()
    finally:
        server.kill()


def local(source: Path, model: str, feeds: Feeds) -> Feeds:
    session = ort.InferenceSession(
        str(source / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


async def infer(protocol: str, url: str, model: str, feeds: Feeds) -> Feeds:
    client_module: Any = grpc_aio if protocol == "grpc" else http_aio
    inputs = []
    for name, array in feeds.items():
        i = client_module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        i.set_data_from_numpy(array)
        inputs.append(i)
    client = client_module.InferenceServerClient(url)
    try:
        result = await client.infer(model, inputs)
    finally:
        await client.close()
    response = result.get_response()
    names = (
        [o.name for o in response.outputs] if protocol == "grpc" else [o["name"] for o in response["outputs"]]
    )
    return {n: result.as_numpy(n) for n in names}


def assert_equal_outputs(got: Feeds, want: Feeds) -> None:
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        assert got[name].shape == expected.shape, name
        assert np.abs(expected).max() > 0, f"{name}: the reference is all zeros"
        np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)


def url(triton: TritonServer, protocol: str) -> str:
    return triton.grpc_url if protocol == "grpc" else triton.http_url


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_tiny_fp32_equals_onnxruntime(triton: TritonServer, source: Path, protocol: str) -> None:
    served = triton.repository / "tiny.fp32" / "1" / "model.onnx"
    assert served.is_symlink()  # Triton follows the link to the source's file
    ids, mask = tiny_batch(rows=3, length=6, seed=1, pad=2)
    feeds = {"input_ids": ids, "attention_mask": mask}
    got = await infer(protocol, url(triton, protocol), "tiny.fp32", feeds)
    assert_equal_outputs(got, local(source, "tiny.fp32", feeds))


async def _model_stats(triton: TritonServer, model: str) -> tuple[int, int]:
    client = grpc_aio.InferenceServerClient(triton.grpc_url)
    try:
        stats = (await client.get_inference_statistics(model)).model_stats[0]
    finally:
        await client.close()
    return int(stats.inference_count), int(stats.execution_count)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_int8_variable_lengths_share_one_dynamic_batch(
    triton: TritonServer, source: Path, protocol: str
) -> None:
    shapes = [(1, 3), (2, 5), (1, 7), (3, 2), (1, 6)]  # 8 rows: the batch is full, Triton runs it at once
    requests = []
    for seed, (rows, length) in enumerate(shapes):
        ids, mask = tiny_batch(rows, length, seed=seed, pad=1 if length > 2 else 0)
        requests.append({"input_ids": ids, "attention_mask": mask})
    rows_before, runs_before = await _model_stats(triton, "tiny.int8")
    target = url(triton, protocol)
    replies = await asyncio.wait_for(
        asyncio.gather(*(infer(protocol, target, "tiny.int8", r) for r in requests)), timeout=30
    )
    rows_after, runs_after = await _model_stats(triton, "tiny.int8")
    assert (rows_after - rows_before, runs_after - runs_before) == (8, 1)  # one execution of 8 rows
    for got, feeds, (rows, length) in zip(replies, requests, shapes, strict=True):
        assert got["token_embeddings"].shape == (rows, length, 8)  # cut back from the batch's 7
        assert_equal_outputs(got, local(source, "tiny.int8", feeds))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("model", ["clf.fp32", "clf.nobatch"])
async def test_classifier_equals_onnxruntime(
    triton: TritonServer, source: Path, protocol: str, model: str
) -> None:
    x = np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32)
    got = await infer(protocol, url(triton, protocol), model, {"x": x})
    want = local(source, "clf.fp32", {"x": x})
    assert_equal_outputs(got, want)
    np.testing.assert_allclose(got["probs"].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_wrong_inputs_get_tritons_errors(triton: TritonServer, protocol: str) -> None:
    target = url(triton, protocol)
    ids, mask = tiny_batch(rows=1, length=4)
    with pytest.raises(InferenceServerException, match=r"unexpected inference input 'nope'"):
        await infer(protocol, target, "tiny.fp32", {"input_ids": ids, "nope": mask})
    with pytest.raises(InferenceServerException, match=r"expects 'INT64'"):
        await infer(
            protocol, target, "tiny.fp32", {"input_ids": ids.astype(np.float32), "attention_mask": mask}
        )
    ids[0, 0] = POISON_ID  # Triton accepts it; onnxruntime fails in model.py's session.run
    with pytest.raises(InferenceServerException, match=r"(?i)gather|out of bounds|invalid"):
        await infer(protocol, target, "tiny.fp32", {"input_ids": ids, "attention_mask": mask})


def test_python_backend_files(source: Path, tmp_path: Path) -> None:
    names = write_python_backend_repo(
        source, tmp_path, ["tiny.int8"], intra_op_threads=2, spinning=False, instances=3, copy=True
    )
    assert names == ["tiny.int8"]
    model = tmp_path / "tiny.int8"
    cfg = text_format.Parse((model / "config.pbtxt").read_text(), mc.ModelConfig())
    assert (cfg.platform, cfg.backend) == ("", "python")
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert params[triton_model.PARAM_INTRA_OP_THREADS] == "2"
    assert params[triton_model.PARAM_SPINNING] == "0"
    assert params["varigate.variant"] == "int8"  # the source's parameters stay
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 3)]
    assert [t.allow_ragged_batch for t in cfg.input] == [True, True]
    onnx_file = model / "1" / "model.onnx"
    assert not onnx_file.is_symlink()
    assert onnx_file.read_bytes() == (source / "tiny.int8" / "1" / "model.onnx").read_bytes()
    assert (model / "1" / "model.py").read_text() == Path(triton_model.__file__).read_text()
    assert (model / "varigate_card.json").read_bytes() == (
        source / "tiny.int8" / "varigate_card.json"
    ).read_bytes()
    assert sorted(p.name for p in tmp_path.parent.iterdir() if ".partial-" in p.name) == []


def test_cli_errors(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> tuple[int, str]:
        code = cli.main(["triton-repo", *args])
        return code, capsys.readouterr().err

    code, err = run(str(tmp_path / "missing"), str(tmp_path / "out"))
    assert code == 2 and "is not a directory" in err
    (tmp_path / "empty").mkdir()
    code, err = run(str(tmp_path / "empty"), str(tmp_path / "out"))
    assert code == 2 and "is not a model repository" in err
    code, err = run(str(source), str(tmp_path / "out"), "--models", "tiny.fp64")
    assert code == 2 and "'tiny.fp64'" in err
    other = tmp_path / "other"
    shutil.copytree(source / "clf.fp32", other / "clf.fp32")
    cfg_path = other / "clf.fp32" / "config.pbtxt"
    cfg_path.write_text(
        cfg_path.read_text().replace('platform: "onnxruntime_onnx"', 'platform: "pytorch_libtorch"')
    )
    code, err = run(str(other), str(tmp_path / "out"))
    assert code == 2 and "'clf.fp32'" in err and "'pytorch_libtorch'" in err
    assert not (tmp_path / "out" / "clf.fp32").exists()
    code, err = run(str(source), str(source))
    assert code == 2 and "is SRC" in err
    assert cli.main(["triton-repo", str(source), str(tmp_path / "out"), "--models", "clf.fp32"]) == 0
    assert f"clf.fp32 -> {tmp_path / 'out' / 'clf.fp32'}" in capsys.readouterr().out


def test_stop_ends_server_and_stubs(install: TritonInstall, source: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_python_backend_repo(source, repo, ["clf.fp32", "tiny.fp32"])
    server = TritonServer(install, repo, tmp_path / "triton.log").start()
    try:
        assert 0 < server.ready_s < 60
        stubs = descendants(server.pid)
        assert len(stubs) == 2, server.log()  # one Python-backend stub per model instance
        assert server.stop() == 0
        assert [p for p in stubs if alive(p)] == []
        assert "successfully unloaded 'clf.fp32'" in server.log()
    finally:
        server.kill()
