"""int8 dynamic quantization (onnxruntime): int8 weights ahead of time, activation scales per run.

On AVX2 without VNNI onnxruntime multiplies u8 activations by s8 weights with VPMADDUBSW, whose 16-bit
intermediate sums can saturate; ``reduce_range`` (7-bit weights) avoids that at a small precision cost.
The fallback ladder tries the alternatives and, last, keeps the most sensitive MatMuls in fp32.
"""

from __future__ import annotations

from pathlib import Path

from compressor.config import Int8DynamicConfig
from compressor.cpu import has_vnni


def apply(src: Path, dst: Path, config: Int8DynamicConfig) -> dict[str, object]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    config = resolve(config)
    quantize_dynamic(
        str(src),
        str(dst),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=QuantType[config.weight_type],
        op_types_to_quantize=config.op_types_to_quantize,
        nodes_to_exclude=config.nodes_to_exclude,
    )
    return {**config.model_dump(), "vnni": has_vnni()}


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
