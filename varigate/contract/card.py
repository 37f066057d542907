"""Variant cards: the compressor's measured facts about one variant.

A card is ``<model_dir>/varigate_card.json`` beside ``config.pbtxt`` (``layout.CARD_FILENAME``). The
compressor writes it (``compressor/pipeline.py``); the gateway's repository reads it to seed the selection
policy, and the benchmarks read it for their tables. Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from varigate.contract.layout import CARD_FILENAME

CARD_SCHEMA_VERSION = 1


__all__ = [
    "CARD_FILENAME",
    "CARD_SCHEMA_VERSION",
    "Accuracy",
    "BatchProfile",
    "CardError",
    "Gate",
    "VariantCard",
    "card_from_dict",
    "read_card",
]


class CardError(ValueError):
    """A card that cannot be read; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class BatchProfile:
    batch_size: int
    p50_ms: float
    p99_ms: float
    throughput_per_s: float  # rows (sequences / images) per second at this batch size
    samples: int


@dataclass(frozen=True, slots=True)
class Accuracy:
    metric: str  # "top1" (classifier) or "mean_cosine" (embedder, against fp32)
    value: float
    reference_value: float  # the fp32 reference's value of the same metric
    relative_loss: float  # (reference - value) / reference, >= 0 means worse
    extra: dict[str, float] = field(default_factory=dict)  # e.g. nn_top1_agreement


@dataclass(frozen=True, slots=True)
class Gate:
    max_relative_loss: float
    passed: bool
    reason: str  # why it passed or failed, in words
    attempts: list[dict[str, Any]] = field(default_factory=list)  # the fallback ladder tried


@dataclass(frozen=True, slots=True)
class VariantCard:
    logical_model: str
    variant: str
    model_name: str  # the Triton model name, e.g. "minilm.int8"
    task: str  # "embedding" or "classification"
    accuracy: Accuracy
    gate: Gate
    profile: list[BatchProfile]
    profile_conditions: dict[str, Any]  # seq_len, threads, iterations
    size_bytes: int
    settings: dict[str, Any]  # quantization / pruning / distillation settings
    environment: dict[str, Any]  # cpu flags, tool versions
    build_key: str  # hash of source + settings: equal keys mean up to date
    notes: list[str] = field(default_factory=list)
    batch_dependence: dict[str, Any] = field(default_factory=dict)  # output change when batched
    schema_version: int = CARD_SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def latency_ms(self, batch_size: int, quantile: str = "p99_ms") -> float:
        """Profiled latency at ``batch_size``, interpolated linearly between profiled sizes."""
        if not self.profile:
            raise CardError(f"card for {self.model_name!r} has no latency profile")
        pts = sorted(self.profile, key=lambda p: p.batch_size)
        if batch_size <= pts[0].batch_size:
            return float(getattr(pts[0], quantile))
        for lo, hi in pairwise(pts):
            if batch_size <= hi.batch_size:
                f = (batch_size - lo.batch_size) / (hi.batch_size - lo.batch_size)
                return float(getattr(lo, quantile) + f * (getattr(hi, quantile) - getattr(lo, quantile)))
        last = pts[-1]  # beyond the profile: scale per row
        return float(getattr(last, quantile) * batch_size / last.batch_size)


def card_from_dict(d: dict[str, Any], source: str = "<card>") -> VariantCard:
    try:
        version = d.get("schema_version", CARD_SCHEMA_VERSION)
        if version != CARD_SCHEMA_VERSION:
            raise CardError(f"{source}: schema_version {version!r} is not {CARD_SCHEMA_VERSION}")
        return VariantCard(
            logical_model=str(d["logical_model"]),
            variant=str(d["variant"]),
            model_name=str(d["model_name"]),
            task=str(d["task"]),
            accuracy=Accuracy(**d["accuracy"]),
            gate=Gate(**d["gate"]),
            profile=[BatchProfile(**p) for p in d["profile"]],
            profile_conditions=dict(d["profile_conditions"]),
            size_bytes=int(d["size_bytes"]),
            settings=dict(d["settings"]),
            environment=dict(d["environment"]),
            build_key=str(d["build_key"]),
            notes=list(d.get("notes", [])),
            batch_dependence=dict(d.get("batch_dependence", {})),
        )
    except KeyError as e:
        raise CardError(f"{source}: missing field {e.args[0]!r}") from None
    except TypeError as e:
        raise CardError(f"{source}: {e}") from None


def read_card(model_dir: Path) -> VariantCard:
    path = model_dir / CARD_FILENAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CardError(f"{path}: no variant card") from None
    except json.JSONDecodeError as e:
        raise CardError(f"{path}: not JSON ({e})") from None
    return card_from_dict(data, str(path))
