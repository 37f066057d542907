"""fp16: weights and activations in half precision where onnxruntime's CPU provider has kernels.

A naive conversion does not load on the CPU provider: many operators have no fp16 CPU kernel
("Could not find an implementation for ..."). We convert with fp32 graph inputs/outputs, then let
onnxruntime tell us which operator types it cannot run in fp16 and keep exactly those in fp32 (the
converter inserts the Casts), repeating until the model loads.
"""

from __future__ import annotations

import re
from pathlib import Path

import onnx
from pydantic import BaseModel, ConfigDict, Field

_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(")


class Fp16Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_io_types: bool = Field(True, description="Graph inputs and outputs stay fp32, so clients are unchanged.")
    op_block_list: list[str] = Field(default_factory=list, description="Operator types kept in fp32 from the start.")
    max_rounds: int = Field(20, ge=1, description="Load attempts while discovering unsupported operators.")


def apply(src: Path, dst: Path, config: Fp16Config | None = None) -> dict[str, object]:
    import onnxruntime as ort
    from onnxconverter_common import float16

    config = config or Fp16Config()
    blocked = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *config.op_block_list]))
    model = onnx.load(str(src))
    for _ in range(config.max_rounds):
        converted = float16.convert_float_to_float16(
            model, keep_io_types=config.keep_io_types, op_block_list=blocked, disable_shape_infer=False
        )
        onnx.save(converted, str(dst))
        try:
            ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            m = _NO_KERNEL.search(str(e))
            if not m or m.group(1) in blocked:
                raise
            blocked.append(m.group(1))
            continue
        fp16_ops = sorted({n.op_type for n in converted.graph.node if n.op_type not in blocked and n.op_type != "Cast"})
        return {
            "keep_io_types": config.keep_io_types,
            "ops_kept_fp32": sorted(set(blocked) - set(float16.DEFAULT_OP_BLOCK_LIST)),
            "ops_in_fp16": fp16_ops,
        }
    raise RuntimeError(f"fp16 model still fails to load after {config.max_rounds} rounds; blocked {blocked}")
