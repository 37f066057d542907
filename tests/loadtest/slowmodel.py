"""A deliberately slow real model: ``slow.fp32`` spends a few milliseconds of honest compute per row.

Input ``x`` FP32 ``[-1, 4]``, output ``y`` FP32 ``[-1, DIM]``: a chain of ``LAYERS`` MatMul + Tanh over
one shared ``DIM x DIM`` weight. No dynamic batching and one instance, so the gateway runs requests one
at a time and a request arriving while others run waits in the queue: a server that can be overloaded
on purpose, with a known, rate-limiting service time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compressor.repository import ServingSpec, TensorSpec, config_text, model_config
from varigate.contract.layout import MODEL_FILENAME

DIM = 1024
LAYERS = 192  # about 10 ms per row on one core of this machine when it is quiet


def slow_model(layers: int = LAYERS, dim: int = DIM) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    inits = [
        numpy_helper.from_array((rng.normal(size=(4, dim)) / 2).astype(np.float32), "w0"),
        numpy_helper.from_array((rng.normal(size=(dim, dim)) / np.sqrt(dim)).astype(np.float32), "w"),
    ]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"])]
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], ["y" if i == layers - 1 else f"h{i + 1}"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="slowmodel")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_slow_repository(path: Path, layers: int = LAYERS) -> Path:
    spec = ServingSpec(
        inputs=(TensorSpec("x", "float32", (4,)),),
        outputs=(TensorSpec("y", "float32", (DIM,)),),
        max_batch_size=8,
    )
    cfg = model_config("slow.fp32", "slow", "fp32", spec)
    cfg.ClearField("dynamic_batching")
    target = path / "slow.fp32"
    (target / "1").mkdir(parents=True)
    (target / "config.pbtxt").write_text(config_text(cfg))
    onnx.save(slow_model(layers), target / "1" / MODEL_FILENAME)
    return path
