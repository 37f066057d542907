"""One declarative recipe per variant: what it is built from, how, how it is judged and what its card says.

A recipe names its variant (from the contract's vocabulary), the variant it starts from, its default
accuracy gate, the settings that enter its build key, its fallback ladder (the candidates tried in order
until one passes the gate) and its card notes. The pipeline iterates ``RECIPES``; it knows no variant by
name. The reference (``upstream=None``) is the source itself, exported or copied, and is never gated.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.config import BuildConfig
from compressor.passes import export, fp16, int8_dynamic, int8_static, prune, structured
from compressor.passes.base import PassResult, TorchModel
from compressor.source import Source
from varigate.contract.variants import REFERENCE_VARIANT, VARIANTS

Log = Callable[[str], None]
# The contract's names, in its build order (unpacking fails loudly when the vocabulary changes).
FP32, FP16, INT8, PRUNED, STRUCTURED, STRUCTURED_INT8 = VARIANTS


class SkipVariant(Exception):
    """The variant cannot be built from this source (not a failure of the gate)."""


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a ladder is handed: the source, its upstream's ONNX file (None for the reference), a scratch
    directory of the pipeline's own, the run's config."""

    source: Source
    upstream: Path | None
    work: Path
    config: BuildConfig
    log: Log


@dataclass(frozen=True, slots=True)
class Recipe:
    variant: str
    upstream: str | None  # the variant it is built from; None: the reference, built from the source
    max_loss: float | None  # default gate: largest relative accuracy loss; None: not gated
    key_settings: Callable[[Source, BuildConfig], dict[str, Any]]  # what enters its build key
    ladder: Callable[[Inputs], Iterator[PassResult]]  # candidates, best first
    notes: tuple[str, ...] = ()
    source_notes: bool = False  # the card also carries the source's own notes

    def gate(self, config: BuildConfig) -> float | None:
        """The gate this run applies: the run's override, else the recipe's default."""
        return config.gate.max_relative_loss.get(self.variant, self.max_loss)


def _torch(source: Source, needs: str) -> TorchModel:
    if source.torch_module is None:
        raise SkipVariant(needs)
    outputs = tuple(t.name for t in source.serving.outputs)
    return TorchModel(source.torch_module, source.example_inputs, outputs, source.dynamic_axes)


def _upstream(inputs: Inputs) -> Path:
    assert inputs.upstream is not None, "a derived variant's ladder is handed its upstream's file"
    return inputs.upstream


def _reference(inputs: Inputs) -> Iterator[PassResult]:
    src, dst = inputs.source, inputs.work / f"{FP32}.onnx"
    if src.onnx_path is not None:
        shutil.copyfile(src.onnx_path, dst)
        yield PassResult(dst, {"pass": "copy of the given ONNX file", "source": str(src.onnx_path)})
        return
    parity = [src.example_inputs, *src.eval_batches[:2]]
    model = _torch(src, "needs a torch module or an ONNX file")
    made = export.run(model, export.ExportConfig(parity, inputs.config.parity_atol), dst)
    diff = made.settings["parity_max_abs_diff"]
    inputs.log(f"  {FP32}: export parity max |onnx - torch| = {diff:.2e}")
    yield made


def _fp16(inputs: Inputs) -> Iterator[PassResult]:
    yield fp16.run(_upstream(inputs), fp16.Fp16Config(), inputs.work / f"{FP16}.onnx")


def _int8(tag: str) -> Callable[[Inputs], Iterator[PassResult]]:
    """int8 of the upstream: static (QDQ, calibrated) or dynamic, as the source asks, along its ladder."""

    def ladder(inputs: Inputs) -> Iterator[PassResult]:
        src, base, work = inputs.source, _upstream(inputs), inputs.work
        if src.int8_mode == "static":
            first = int8_static.Int8StaticConfig()
            for i, cfg in enumerate([first, *int8_static.fallback_configs(first)]):
                calibrated = int8_static.CalibratedConfig(cfg, src.calib_batches)
                yield int8_static.run(base, calibrated, work / f"{tag}.static{i}.onnx")
            return
        rungs = int8_dynamic.ladder(inputs.config.int8_dynamic, int8_dynamic.sensitive_matmuls(base))
        for i, rung in enumerate(rungs):
            yield int8_dynamic.run(base, rung, work / f"{tag}.dynamic{i}.onnx")

    return ladder


def _pruned(inputs: Inputs) -> Iterator[PassResult]:
    model = _torch(inputs.source, "needs a torch module (the source is an ONNX file)")
    for i, amount in enumerate(inputs.config.prune.amounts):
        yield prune.run(model, prune.PruneAmount(amount), inputs.work / f"pruned{i}.onnx")


def _structured(inputs: Inputs) -> Iterator[PassResult]:
    src, config = inputs.source, inputs.config
    needs = "needs a torch module with a structured prune + distil routine"
    model = _torch(src, needs)
    if src.structured is None:
        raise SkipVariant(needs)
    settings = config.structured.get(src.logical_model, {})
    for attempt in range(config.structured_attempts):
        step = structured.StructuredConfig(src.structured, settings, attempt)
        try:
            made = structured.run(model, step, inputs.work / f"structured{attempt}.onnx")
        except structured.NoMoreRungs:
            return
        yield made


def _no_settings(source: Source, config: BuildConfig) -> dict[str, Any]:
    return {}


def _int8_settings(source: Source, config: BuildConfig) -> dict[str, Any]:
    return {"int8": int8_dynamic.resolve(config.int8_dynamic).model_dump(), "mode": source.int8_mode}


def _prune_settings(source: Source, config: BuildConfig) -> dict[str, Any]:
    return {"prune": config.prune.model_dump()}


def _structured_settings(source: Source, config: BuildConfig) -> dict[str, Any]:
    return {
        "structured": config.structured.get(source.logical_model, {}),
        "attempts": config.structured_attempts,
    }


RECIPES = (
    Recipe(FP32, None, None, _no_settings, _reference, source_notes=True),
    Recipe(
        FP16,
        FP32,
        0.01,
        _no_settings,
        _fp16,
        ("fp16 on onnxruntime's CPU provider: operators without an fp16 CPU kernel stay fp32 behind Casts",),
    ),
    Recipe(INT8, FP32, 0.01, _int8_settings, _int8(INT8)),
    Recipe(
        PRUNED,
        FP32,
        0.01,
        _prune_settings,
        _pruned,
        (
            "unstructured sparsity: onnxruntime's dense kernels do not skip zeros, so this variant is not "
            "faster than fp32",
        ),
    ),
    Recipe(STRUCTURED, FP32, 0.03, _structured_settings, _structured),
    Recipe(STRUCTURED_INT8, STRUCTURED, 0.03, _int8_settings, _int8("structured-int8")),
)
BY_VARIANT = {r.variant: r for r in RECIPES}
assert tuple(BY_VARIANT) == VARIANTS and FP32 == REFERENCE_VARIANT, "one recipe per variant, in order"


def recipe(variant: str) -> Recipe:
    try:
        return BY_VARIANT[variant]
    except KeyError:
        raise ValueError(f"no recipe for variant {variant!r}; known: {list(VARIANTS)}") from None
