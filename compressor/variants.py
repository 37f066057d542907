"""Candidate builders: for each variant, the fallback ladder of ONNX candidates to try against the gate.

Each builder yields ``(onnx_path, settings)`` candidates, best first; the pipeline evaluates each, keeps
the first that passes its gate and records every attempt in the card.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compressor.config import BuildConfig
from compressor.passes import export, fp16, int8_dynamic, prune
from compressor.source import Source

Candidate = tuple[Path, dict[str, Any]]


def _export(source: Source, module: Any, dst: Path) -> Path:
    outputs = [t.name for t in source.serving.outputs]
    return export.apply(module, source.example_inputs, outputs, source.dynamic_axes, dst)


def fp16_candidates(source: Source, fp32: Path, work: Path, config: BuildConfig) -> Iterator[Candidate]:
    dst = work / "fp16.onnx"
    yield dst, {"pass": "fp16", **fp16.apply(fp32, dst)}


def int8_candidates(
    source: Source, base: Path, work: Path, config: BuildConfig, tag: str
) -> Iterator[Candidate]:
    if source.int8_mode == "static":
        from compressor.passes import int8_static

        first = int8_static.Int8StaticConfig()
        for i, cfg in enumerate([first, *int8_static.fallback_configs(first)]):
            dst = work / f"{tag}.static{i}.onnx"
            used = int8_static.apply(base, dst, source.calib_batches, cfg)
            yield dst, {"pass": "int8 static QDQ (calibrated)", **used}
        return
    rungs = int8_dynamic.ladder(config.int8_dynamic, int8_dynamic.sensitive_matmuls(base))
    for i, rung in enumerate(rungs):
        dst = work / f"{tag}.dynamic{i}.onnx"
        yield dst, {"pass": "int8 dynamic", **int8_dynamic.apply(base, dst, rung)}


def pruned_candidates(source: Source, fp32: Path, work: Path, config: BuildConfig) -> Iterator[Candidate]:
    if source.torch_module is None:
        raise SkipVariant("needs a torch module (the source is an ONNX file)")
    for i, amount in enumerate(config.prune.amounts):
        student, info = prune.apply(source.torch_module, amount)
        yield _export(source, student, work / f"pruned{i}.onnx"), {"pass": "prune", **info}


def structured_candidates(source: Source, fp32: Path, work: Path, config: BuildConfig) -> Iterator[Candidate]:
    if source.torch_module is None or source.structured is None:
        raise SkipVariant("needs a torch module with a structured prune + distil routine")
    for attempt in range(config.structured_attempts):
        student, info = source.structured(
            source.torch_module, dict(config.structured.get(source.logical_model, {})), attempt
        )
        yield (
            _export(source, student, work / f"structured{attempt}.onnx"),
            {
                "pass": "structured prune + distil",
                "attempt": attempt,
                **info,
            },
        )


class SkipVariant(Exception):
    """The variant cannot be built from this source (not a failure of the gate)."""
