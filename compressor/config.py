"""Typed configuration of a compressor run (pydantic, unknown keys rejected).

What each variant is (its default gate, its ladder, its build key) is its recipe's, in
``compressor.recipes``; this module holds only what a run may change.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from compressor.passes.int8_dynamic import Int8DynamicConfig
from varigate.contract.variants import REFERENCE_VARIANT, VARIANTS


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_relative_loss: dict[str, float] = Field(
        default_factory=dict,
        description="Largest relative accuracy loss against the reference allowed, per variant (0.01 = 1%); "
        "a variant not named here keeps its recipe's default gate.",
    )

    @field_validator("max_relative_loss")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        for name, loss in v.items():
            if name not in VARIANTS:
                raise ValueError(f"unknown variant {name!r} in gate; known: {list(VARIANTS)}")
            if not 0.0 <= loss < 1.0:
                raise ValueError(f"gate for {name!r} must be in [0, 1), got {loss}")
        return v


class ProfileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_sizes: list[int] | None = Field(
        None, description="Batch sizes to profile; default 1, 2, 4, ... max batch."
    )
    warmup: int = Field(3, ge=0, description="Untimed runs before each batch size.")
    min_iterations: int = Field(10, ge=3, description="Timed runs per batch size, at least.")
    max_seconds_per_batch: float = Field(2.0, gt=0, description="Stop timing a batch size after this long.")
    intra_op_threads: int = Field(
        0,
        ge=0,
        description="onnxruntime intra-op threads while profiling; 0 = those of the gateway's default layout "
        "(varigate/contract/execution.py), so that the cards describe what the gateway serves with.",
    )


class PruneConfig(BaseModel):
    """Unstructured global magnitude pruning (torch.nn.utils.prune), made permanent."""

    model_config = ConfigDict(extra="forbid")

    amounts: list[float] = Field(
        [0.5, 0.4, 0.3, 0.2, 0.1],
        description="Fraction of Linear/Conv weights zeroed; tried in order until the gate passes.",
    )

    @field_validator("amounts")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 < a < 1.0 for a in v):
            raise ValueError(f"prune amounts must be a non-empty list in (0, 1), got {v}")
        return v


class BuildConfig(BaseModel):
    """One compressor run over one source."""

    model_config = ConfigDict(extra="forbid")

    variants: list[str] = Field(
        list(VARIANTS), description="Variants to build (the reference is always built)."
    )
    gate: GateConfig = Field(default_factory=GateConfig, description="Accuracy gate per variant.")
    profile: ProfileConfig = Field(default_factory=ProfileConfig, description="Latency profiling.")
    prune: PruneConfig = Field(default_factory=PruneConfig, description="Unstructured pruning ladder.")
    int8_dynamic: Int8DynamicConfig = Field(default_factory=Int8DynamicConfig, description="Dynamic int8.")
    structured: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per logical model (e.g. 'minilm'), settings passed to its structured prune + distil "
        "routine.",
    )
    structured_attempts: int = Field(2, ge=1, description="Rungs of the structured fallback ladder to try.")
    parity_atol: float = Field(1e-4, gt=0, description="Max |onnx - torch| allowed for the fp32 export.")
    force: bool = Field(False, description="Rebuild variants even when they are up to date.")

    @field_validator("variants")
    @classmethod
    def _variants(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
        return [REFERENCE_VARIANT, *[x for x in VARIANTS if x in v and x != REFERENCE_VARIANT]]
