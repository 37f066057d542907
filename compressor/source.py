"""What the pipeline needs to know about one source model, whatever it is.

A source (MiniLM, the digits CNN, a user's module or ONNX file) is turned into a ``Source``: the fp32
teacher as a torch module (or only an ONNX file), example and evaluation inputs as numpy arrays, the
serving spec for config.pbtxt, and optionally a structured prune + distil routine of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.repository import ServingSpec

if TYPE_CHECKING:
    import torch

Feeds = dict[str, np.ndarray]


@dataclass
class Source:
    logical_model: str
    task: str  # "embedding" (gated on mean cosine to fp32) or "classification" (gated on top-1)
    serving: ServingSpec
    # The fp32 teacher. None for an ONNX-only source (then only fp32/fp16/int8 variants are possible).
    torch_module: torch.nn.Module | None
    # Used for the ONNX export trace (batch 2 at least so batch axes stay dynamic).
    example_inputs: Feeds
    # The primary held-out evaluation set (named ``eval_set``), as batches of feeds (never used for
    # training or calibration).
    eval_batches: Sequence[Feeds]
    eval_labels: np.ndarray | None  # classification: labels aligned with the concatenated eval batches
    # Calibration set for static quantization (a few hundred rows, disjoint from eval).
    calib_batches: Sequence[Feeds]
    # Inputs for latency profiling at a given batch size (e.g. sequence length 64 for the transformer).
    profile_feeds: Callable[[int], Feeds]
    profile_conditions: dict[str, Any] = field(default_factory=dict)
    # ONNX file of the fp32 model when the source is ONNX-only.
    onnx_path: Path | None = None
    # Names of dynamic axes per tensor for the export, e.g. {"input_ids": {0: "batch", 1: "seq"}}.
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    # Which int8 pass suits this source: "dynamic" (transformers) or "static" (CNNs, QDQ + calibration).
    int8_mode: str = "dynamic"
    # Source-specific structured prune + distil: (teacher, settings, attempt) -> smaller student module.
    # ``attempt`` counts up along the fallback ladder (0 = default, 1+ = train longer / prune less).
    structured: (
        Callable[[torch.nn.Module, dict[str, Any], int], tuple[torch.nn.Module, dict[str, Any]]] | None
    ) = None
    # The primary held-out set's name, in the card's per-set figures and the gate's ``gated_on``.
    eval_set: str = "heldout"
    # More named held-out sets (e.g. MiniLM's {"english": ...}), disjoint from training like eval_batches.
    # An embedding candidate is scored on every set and gated on the worst; classification uses only the
    # primary set (its labels).
    extra_eval: dict[str, Sequence[Feeds]] = field(default_factory=dict)
    # Identity of the source for build keys (weights hash, dataset seed, ...).
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)
