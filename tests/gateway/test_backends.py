"""The backend interface and the onnxruntime backend: loading by name, type mapping, refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gateway.backends.base import BackendLoader, BackendLoadError, load_backend
from gateway.backends.onnxruntime import OnnxRuntimeBackend, datatype_from_onnx, datatype_to_onnx
from gateway.core.config import TensorConfig
from gateway.core.types import Datatype
from gateway.repository import ModelRepository
from tests.fixtures.tinyrepo import tiny_reference

from .conftest import BACKEND_OPTIONS


def test_type_mapping_round_trips() -> None:
    for datatype in Datatype:
        assert datatype_from_onnx(datatype_to_onnx(datatype)) is datatype
    with pytest.raises(BackendLoadError, match=r"ONNX type 'tensor\(bfloat16\)' has no KServe v2 datatype"):
        datatype_from_onnx("tensor(bfloat16)")


def test_backends_load_by_name_and_refuse_bad_names() -> None:
    backend = load_backend("gateway.backends.onnxruntime:OnnxRuntimeBackend", **BACKEND_OPTIONS)
    assert isinstance(backend, OnnxRuntimeBackend)
    backend.close()
    with pytest.raises(BackendLoadError, match="must be given as 'module:attr'"):
        load_backend("gateway.backends.onnxruntime")
    with pytest.raises(BackendLoadError, match="has no attribute 'Nope'"):
        load_backend("gateway.backends.onnxruntime:Nope")
    with pytest.raises(BackendLoadError, match=r"cannot import module 'no_such_module'"):
        load_backend("no_such_module:Backend")
    with pytest.raises(
        BackendLoadError, match="executor_workers 3 x intra_op_threads 2 must be between 1 and the 4 cores"
    ):
        OnnxRuntimeBackend(intra_op_threads=2, executor_workers=3, cores=4)


async def test_runner_runs_a_whole_batch_off_the_loop(tiny_repo: Path) -> None:
    spec = ModelRepository(tiny_repo).scan().models["tiny.fp32"]
    loader = BackendLoader(OnnxRuntimeBackend(**BACKEND_OPTIONS))
    runner = await loader.load(spec, 1)
    ids = np.array([[1, 2, 3], [4, 5, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1], [1, 1, 0]], dtype=np.int64)
    out = await runner.infer({"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(out["embedding"], tiny_reference(ids, mask), atol=1e-5)
    assert out["token_embeddings"].shape == (2, 3, 8)
    runner.close()
    loader.close()


def test_config_and_model_must_agree(tiny_repo: Path) -> None:
    spec = ModelRepository(tiny_repo).scan().models["tiny.fp32"]
    backend = OnnxRuntimeBackend(**BACKEND_OPTIONS)
    wrong_type = dataclasses.replace(
        spec.config, inputs=(TensorConfig("input_ids", Datatype.INT32, (-1,)), spec.config.inputs[1])
    )
    with pytest.raises(BackendLoadError, match=r"'input_ids' is INT32 in config.pbtxt but INT64 in"):
        backend.load(spec.version_path(1), wrong_type)
    missing = dataclasses.replace(spec.config, inputs=spec.config.inputs[:1])
    with pytest.raises(BackendLoadError, match=r"needs input 'attention_mask' that config.pbtxt lacks"):
        backend.load(spec.version_path(1), missing)
    other = dataclasses.replace(spec.config, platform="tensorflow_savedmodel")
    with pytest.raises(BackendLoadError, match="platform 'tensorflow_savedmodel'"):
        backend.load(spec.version_path(1), other)
    with pytest.raises(BackendLoadError, match="no model file at"):
        backend.load(spec.version_path(7), spec.config)
    backend.close()
