"""int8 static quantization (onnxruntime, QDQ format): activation ranges fixed ahead of time from calibration.

Takes any fp32 ONNX model. ``quant_pre_process`` (shape inference + graph optimisation, e.g. folding) runs
first; then ``quantize_static`` inserts QuantizeLinear / DequantizeLinear pairs that onnxruntime's CPU
provider fuses into QLinearConv / QGemm kernels.

Defaults, as measured on the digits CNN: u8 activations x s8 weights, per-tensor, MinMax. ``reduce_range``
(7-bit weights) is on because on x86 without VNNI onnxruntime multiplies u8 by s8 with VPMADDUBSW, whose
16-bit pair sums saturate (a simulation of that kernel saturates up to 4 % of the first conv's sums at 8 bits,
none at 7); on VNNI it costs only a little precision. ``exclude_sensitive`` keeps the first Conv and the last
Gemm / MatMul in fp32: the input conv has few input channels (poor int8 efficiency, full-range inputs) and
the last layer is small, so leaving them float was both more accurate and faster.
``fallback_configs`` lists what the pipeline tries when the accuracy gate fails.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from pydantic import BaseModel, ConfigDict, Field

from compressor import progress
from compressor.passes.base import Feeds, PassResult

NAME = "int8 static QDQ (calibrated)"


class Int8StaticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_channel: bool = Field(False, description="One weight scale per output channel instead of per tensor.")
    reduce_range: bool = Field(
        True, description="7-bit weights: avoids VPMADDUBSW saturation on x86 without VNNI."
    )
    activation_type: Literal["QUInt8", "QInt8"] = Field("QUInt8", description="Integer type of activations.")
    weight_type: Literal["QInt8", "QUInt8"] = Field("QInt8", description="Integer type of weights.")
    calibrate_method: Literal["MinMax", "Entropy", "Percentile"] = Field(
        "MinMax", description="How activation ranges are chosen from the calibration data."
    )
    percentile: float = Field(
        99.999, gt=90.0, le=100.0, description="Range percentile for calibrate_method=Percentile."
    )
    nodes_to_exclude: list[str] = Field(default_factory=list, description="Node names left in fp32.")
    exclude_sensitive: bool = Field(
        True,
        description="Also leave the first Conv and the last Gemm / MatMul in fp32 (resolved by name at "
        "apply).",
    )
    op_types_to_quantize: list[str] | None = Field(
        None, description="Op types to quantize; None = all supported."
    )
    preprocess: bool = Field(
        True, description="Run onnxruntime's quant_pre_process (shape inference, optimisation) first."
    )


@dataclass(frozen=True, slots=True)
class CalibratedConfig:
    """The pass's config: the quantization settings and the calibration batches that fix the ranges."""

    settings: Int8StaticConfig
    calibration: Sequence[Feeds]


def run(model: Path, config: CalibratedConfig, output: Path) -> PassResult:
    """Quantize ``model`` into ``output``; the result's settings are those actually used."""
    return PassResult(output, {"pass": NAME, **_quantize(model, output, config.calibration, config.settings)})


def _quantize(
    src_onnx: Path, dst_onnx: Path, calib_batches: Sequence[Feeds], config: Int8StaticConfig
) -> dict[str, Any]:
    batches = [b for b in calib_batches if b and all(len(v) for v in b.values())]
    if not batches:
        raise ValueError(
            f"calibration data is empty: {len(calib_batches)} batches holding 0 rows; "
            "static int8 needs representative inputs to fix its activation ranges"
        )
    _check_feeds(onnx.load(str(src_onnx), load_external_data=False), batches, src_onnx)
    batches = _uniform(batches)
    extra: dict[str, Any] = {}
    if config.calibrate_method == "Percentile":
        extra["CalibPercentile"] = config.percentile
    with tempfile.TemporaryDirectory(prefix="int8-static-") as tmp:
        model_in, preprocess = src_onnx, "skipped"
        if config.preprocess:
            model_in, preprocess = _preprocess(src_onnx, Path(tmp) / "pre.onnx")
        # Node names are resolved on the graph that gets quantized (pre-processing may fuse nodes).
        model = onnx.load(str(model_in), load_external_data=False)
        excluded = list(config.nodes_to_exclude)
        if config.exclude_sensitive:
            excluded += [n for n in sensitive_nodes(model) if n not in excluded]
        unknown = sorted(set(excluded) - {n.name for n in model.graph.node})
        if unknown:
            raise ValueError(
                f"nodes_to_exclude names nodes {unknown} not in {src_onnx.name} (after pre-processing)"
            )
        with progress.task(f"calibrate {dst_onnx.stem}", len(batches), unit="batch") as shown:
            _quantize_static(model_in, dst_onnx, _Reader(batches, shown), config, excluded, extra)
    return {
        **config.model_dump(),
        "quant_format": "QDQ",
        "nodes_excluded": excluded,
        "preprocess_result": preprocess,
        "calibration_rows": int(sum(len(next(iter(b.values()))) for b in batches)),
        "calibration_batches": len(batches),
        "calibration_batch_size": len(next(iter(batches[0].values()))),
    }


def _quantize_static(
    model_in: Path,
    dst_onnx: Path,
    reader: _Reader,
    config: Int8StaticConfig,
    excluded: list[str],
    extra: dict[str, Any],
) -> None:
    quantize_static(
        str(model_in),
        str(dst_onnx),
        calibration_data_reader=reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=config.op_types_to_quantize,
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        activation_type=QuantType[config.activation_type],
        weight_type=QuantType[config.weight_type],
        nodes_to_exclude=excluded,
        calibrate_method=CalibrationMethod[config.calibrate_method],
        extra_options=extra,
    )


def fallback_configs(base: Int8StaticConfig) -> list[Int8StaticConfig]:
    """What to try, in order, after ``base`` fails the accuracy gate (``base`` itself and repeats left out).

    Each rung moves towards accuracy: 7-bit weights (no VPMADDUBSW saturation), per-channel weight scales,
    outlier-robust calibration, the first conv and last Gemm / MatMul kept in fp32, then all of these.
    """
    updates: list[dict[str, Any]] = [
        {"reduce_range": True},
        {"per_channel": True},
        {"calibrate_method": "Percentile"},
        {"calibrate_method": "Entropy"},
        {"exclude_sensitive": True},
        {
            "reduce_range": True,
            "per_channel": True,
            "calibrate_method": "Percentile",
            "exclude_sensitive": True,
        },
    ]
    rungs: list[Int8StaticConfig] = []
    for update in updates:
        rung = base.model_copy(update=update)
        if rung != base and rung not in rungs:
            rungs.append(rung)
    return rungs


def sensitive_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the first Conv and the last Gemm / MatMul of an ONNX graph (the ones int8 hurts most)."""
    first_conv = next((n for n in model.graph.node if n.op_type == "Conv"), None)
    last_mm = next((n for n in reversed(model.graph.node) if n.op_type in ("Gemm", "MatMul")), None)
    names: list[str] = []
    for node in (first_conv, last_mm):
        if node is None:
            continue
        if not node.name:
            raise ValueError(
                f"sensitive {node.op_type} node (output {list(node.output)}) has no name to exclude it by"
            )
        names.append(node.name)
    return names


def _preprocess(src: Path, dst: Path) -> tuple[Path, str]:
    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as e:  # noqa: BLE001 - pre-processing is an optimisation; quantize the original instead
        return src, f"failed ({type(e).__name__}: {e}); quantized the model as exported"
    return dst, "applied"


def _check_feeds(model: onnx.ModelProto, batches: list[dict[str, np.ndarray]], path: Path) -> None:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    for k, batch in enumerate(batches):
        missing = sorted(set(inputs) - set(batch))
        extra = sorted(set(batch) - set(inputs))
        if missing or extra:
            raise ValueError(
                f"calibration batch {k} does not match the inputs of {path.name} {inputs}: "
                f"missing {missing}, unexpected {extra}"
            )


def _uniform(batches: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Equal-sized batches over the same rows: the histogram calibrators stack every batch into one array."""
    shapes = {tuple((k, v.shape) for k, v in sorted(b.items())) for b in batches}
    if len(shapes) == 1:
        return batches
    rows = {k: [b[k] for b in batches] for k in batches[0]}
    for name, arrays in rows.items():
        if len({a.shape[1:] for a in arrays}) > 1:
            raise ValueError(
                f"calibration input {name!r} changes shape between batches "
                f"{sorted({a.shape for a in arrays})}; "
                "only the batch axis may vary"
            )
    merged = {k: np.concatenate(v) for k, v in rows.items()}
    total = len(next(iter(merged.values())))
    size = max(d for d in range(1, max(len(a) for a in rows[next(iter(rows))]) + 1) if total % d == 0)
    return [{k: v[i : i + size] for k, v in merged.items()} for i in range(0, total, size)]


class _Reader(CalibrationDataReader):  # type: ignore[misc]
    """onnxruntime's calibration reader over a list of feed dicts; each batch read advances ``shown``
    (a second pass after ``rewind`` is not counted again)."""

    def __init__(self, batches: list[dict[str, np.ndarray]], shown: progress.Task | None = None) -> None:
        self._batches, self._shown = batches, shown
        self._it: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        if batch is not None and self._shown is not None and self._shown.done < len(self._batches):
            self._shown.update()
        return batch

    def rewind(self) -> None:
        self._it = iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)
