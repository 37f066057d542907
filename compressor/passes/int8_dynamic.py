"""int8 dynamic quantization (onnxruntime): int8 weights ahead of time, activation scales per run.

On AVX2 without VNNI onnxruntime multiplies u8 activations by s8 weights with VPMADDUBSW, whose 16-bit
intermediate sums can saturate; ``reduce_range`` (7-bit weights) avoids that at a small precision cost.
The fallback ladder tries the alternatives and, last, keeps the most sensitive MatMuls in fp32.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from compressor.cpu import has_vnni
from compressor.passes.base import PassResult

NAME = "int8 dynamic"


class Int8DynamicConfig(BaseModel):
    """onnxruntime dynamic quantization (weights int8 ahead of time, activation scales per run)."""

    model_config = ConfigDict(extra="forbid")

    per_channel: bool = Field(True, description="Per-output-channel weight scales.")
    reduce_range: bool | None = Field(
        None,
        description="7-bit weights, which avoid u8s8 saturation on AVX2 CPUs without VNNI "
        "(VPMADDUBSW's 16-bit sums). None = decide from this CPU: on without VNNI, off with it "
        "(full 8-bit precision).",
    )
    weight_type: str = Field("QInt8", description="QInt8 or QUInt8.")
    op_types_to_quantize: list[str] = Field(["MatMul", "Gemm"], description="Operator types quantized.")
    nodes_to_exclude: list[str] = Field(default_factory=list, description="Node names kept in fp32.")

    @field_validator("weight_type")
    @classmethod
    def _wt(cls, v: str) -> str:
        if v not in ("QInt8", "QUInt8"):
            raise ValueError(f"weight_type must be QInt8 or QUInt8, got {v!r}")
        return v


def run(model: Path, config: Int8DynamicConfig, output: Path) -> PassResult:
    """Quantize ``model`` into ``output`` (``reduce_range=None`` resolved from this CPU)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    config = resolve(config)
    quantize_dynamic(
        str(model),
        str(output),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=QuantType[config.weight_type],
        op_types_to_quantize=config.op_types_to_quantize,
        nodes_to_exclude=config.nodes_to_exclude,
    )
    return PassResult(output, {"pass": NAME, **config.model_dump(), "vnni": has_vnni()})


def resolve(config: Int8DynamicConfig) -> Int8DynamicConfig:
    """Fill ``reduce_range=None`` from this CPU: 7-bit weights only where u8s8 can saturate (no VNNI)."""
    if config.reduce_range is None:
        return config.model_copy(update={"reduce_range": not has_vnni()})
    return config


def ladder(base: Int8DynamicConfig, sensitive_nodes: list[str]) -> list[Int8DynamicConfig]:
    """The configurations tried in order until one passes the accuracy gate."""
    base = resolve(base)
    rungs = [
        base,
        base.model_copy(update={"reduce_range": not base.reduce_range}),
        base.model_copy(update={"per_channel": not base.per_channel}),
    ]
    if sensitive_nodes:
        rungs.append(base.model_copy(update={"nodes_to_exclude": [*base.nodes_to_exclude, *sensitive_nodes]}))
    seen: list[Int8DynamicConfig] = []
    for r in rungs:
        if r not in seen:
            seen.append(r)
    return seen


def sensitive_matmuls(onnx_path: Path, count: int = 4) -> list[str]:
    """MatMul nodes whose weight has the largest dynamic range (max |w| / mean |w|): those int8 hurts most."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    scored: list[tuple[float, str]] = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        for name in node.input:
            if name in inits:
                w = np.abs(numpy_helper.to_array(inits[name]).astype(np.float32))
                scored.append((float(w.max() / (w.mean() + 1e-12)), node.name))
                break
    return [n for _, n in sorted(scored, reverse=True)[:count]]
