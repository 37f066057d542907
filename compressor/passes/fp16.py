"""fp16: weights and activations in half precision where onnxruntime's CPU provider has kernels.

A naive conversion does not load on the CPU provider: many operators have no fp16 CPU kernel
("Could not find an implementation for ..."), and the converter leaves some nodes type-inconsistent
(e.g. a graph ``Cast`` to float whose output it retypes to float16, as in MiniLM's mean pooling). We
convert with fp32 graph inputs/outputs, then let onnxruntime tell us what it refuses: an operator type
without an fp16 kernel, or a node whose types disagree. We keep exactly those in fp32 (the converter
inserts the Casts around them) and repeat until the model loads.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import onnx
from pydantic import BaseModel, ConfigDict, Field

from compressor.passes.base import PassResult

NAME = "fp16"

_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(")
_BAD_NODE = re.compile(r"node \(([^)]+)\)")


class Fp16Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_io_types: bool = Field(
        True, description="Graph inputs and outputs stay fp32, so clients are unchanged."
    )
    op_block_list: list[str] = Field(
        default_factory=list, description="Operator types kept in fp32 from the start."
    )
    max_rounds: int = Field(20, ge=1, description="Load attempts while discovering unsupported operators.")


def run(model: Path, config: Fp16Config, output: Path) -> PassResult:
    """Convert ``model`` to fp16 at ``output``, keeping in fp32 what the CPU provider refuses in fp16."""
    import onnxruntime as ort
    from onnxconverter_common import float16

    src, dst = model, output
    blocked = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *config.op_block_list]))
    blocked_nodes: list[str] = []
    loaded = onnx.load(str(src))
    for _ in range(config.max_rounds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the converter warns about values it clamps to fp16 range
            converted = float16.convert_float_to_float16(
                copy.deepcopy(loaded),  # the converter mutates its input
                keep_io_types=config.keep_io_types,
                op_block_list=blocked,
                node_block_list=blocked_nodes,
            )
        onnx.save(converted, str(dst))
        try:
            ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
        except Exception as e:
            msg = str(e)
            op, node = _NO_KERNEL.search(msg), _BAD_NODE.search(msg)
            if op and op.group(1) not in blocked:
                blocked.append(op.group(1))
            elif node and node.group(1) not in blocked_nodes:
                blocked_nodes.append(node.group(1))
            else:
                raise
            continue
        fp16_ops = sorted(
            {n.op_type for n in converted.graph.node if n.op_type not in blocked and n.op_type != "Cast"}
        )
        settings: dict[str, object] = {
            "pass": NAME,
            "keep_io_types": config.keep_io_types,
            "ops_kept_fp32": sorted(set(blocked) - set(float16.DEFAULT_OP_BLOCK_LIST)),
            "nodes_kept_fp32": blocked_nodes,
            "ops_in_fp16": fp16_ops,
        }
        return PassResult(dst, settings)
    raise RuntimeError(
        f"fp16 model still fails to load after {config.max_rounds} rounds; blocked ops {blocked}, nodes "
        f"{blocked_nodes}"
    )
