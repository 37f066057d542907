"""Model metadata, configuration and statistics keys, for variants and logical models alike.

A logical model (``minilm``) is not a Triton model, but Triton clients ask for its metadata and config
(e.g. for ``max_batch_size``) before they infer. Its inputs and outputs are those of its variants (they
share one signature); its config is its most accurate variant's, under the logical name.
"""

from __future__ import annotations

import copy
from typing import Any

from gateway.core.api import ModelMetadata, TensorMeta
from gateway.core.config import ModelConfig, ModelSpec, TensorConfig
from gateway.core.errors import ModelNotFound
from gateway.core.models.registry import ModelRecord, Registry, parse_version
from gateway.core.selection.policy import Candidate, accuracy_score
from varigate.contract.variants import REFERENCE_VARIANT


def model_metadata(registry: Registry, name: str, version: str = "") -> ModelMetadata:
    record = registry.get(name)
    if record is not None:
        config = _config(record)
        versions = _versions(record, version)
        return ModelMetadata(
            name=name,
            versions=versions,
            platform=config.platform or config.backend,
            inputs=_tensors(config, config.inputs),
            outputs=_tensors(config, config.outputs),
            parameters=_facts(record),
        )
    variants = _variants(registry, name)
    config = _config(variants[0])
    merged = sorted({v for r in variants for v in _versions(r, version, strict=False)}, key=int)
    if version and not merged:
        raise ModelNotFound(f"model {name!r} has no version {version!r}")
    return ModelMetadata(
        name=name,
        versions=tuple(merged),
        platform=config.platform or config.backend,
        inputs=_tensors(config, config.inputs),
        outputs=_tensors(config, config.outputs),
        parameters={"logical_model": name, "variants": [r.name for r in variants]},
    )


def model_config(registry: Registry, name: str, version: str = "") -> dict[str, Any]:
    """Triton's JSON model configuration (protobuf field names)."""
    record = registry.get(name)
    if record is not None:
        _versions(record, version)
        return copy.deepcopy(_config_json(record))
    variants = [r for r in _variants(registry, name) if not version or _versions(r, version, strict=False)]
    if not variants:
        raise ModelNotFound(f"model {name!r} has no version {version!r}")
    config = copy.deepcopy(_config_json(max(variants, key=_accuracy)))
    config["name"] = name
    return config


def stat_keys(registry: Registry, name: str = "", version: str = "") -> list[tuple[str, str]]:
    """(model, version) pairs whose statistics a request for ``name``/``version`` covers."""
    if not name:
        records = registry.records()
    elif (record := registry.get(name)) is not None:
        records = [record]
    else:
        records = _variants(registry, name)
    keys = [(r.name, str(v.version)) for r in records for v in r.versions]
    if version:
        number = str(parse_version(name, version))
        keys = [k for k in keys if k[1] == number]
        if not keys:
            raise ModelNotFound(f"model {name!r} has no version {version!r}")
    return keys


def _variants(registry: Registry, name: str) -> list[ModelRecord]:
    variants = registry.variants(name)
    if not variants:
        raise ModelNotFound(f"unknown model {name!r}: not in the repository")
    ready = [r for r in variants if r.ready]
    return ready or variants


def _accuracy(record: ModelRecord) -> tuple[float, bool]:
    spec = _spec(record)
    candidate = Candidate(record.name, record.variant, "", spec.config, spec.card, 0, 0)
    return (accuracy_score(candidate), record.variant == REFERENCE_VARIANT)


def _spec(record: ModelRecord) -> ModelSpec:
    if record.spec is None:
        raise ModelNotFound(f"model {record.name!r} has no readable configuration: {record.reason}")
    return record.spec


def _config(record: ModelRecord) -> ModelConfig:
    return _spec(record).config


def _config_json(record: ModelRecord) -> dict[str, Any]:
    return _spec(record).config_json


def _versions(record: ModelRecord, version: str, strict: bool = True) -> tuple[str, ...]:
    known = tuple(str(v.version) for v in record.versions) or tuple(
        str(v) for v in sorted(record.spec.versions if record.spec else ())
    )
    if not version:
        return known
    wanted = str(parse_version(record.name, version))
    if wanted in known:
        return (wanted,)
    if strict:
        raise ModelNotFound(f"model {record.name!r} has no version {version!r}")
    return ()


def _tensors(config: ModelConfig, tensors: tuple[TensorConfig, ...]) -> tuple[TensorMeta, ...]:
    batch = (-1,) if config.max_batch_size > 0 else ()
    return tuple(TensorMeta(t.name, t.datatype.value, batch + t.dims) for t in tensors)


def _facts(record: ModelRecord) -> dict[str, Any]:
    facts: dict[str, Any] = {"logical_model": record.logical_model, "variant": record.variant}
    card = record.spec.card if record.spec else None
    if record.spec is not None and record.spec.card_error:
        facts["card_error"] = record.spec.card_error
    if card is not None:
        facts.update(
            accuracy_metric=card.accuracy.metric,
            accuracy=card.accuracy.value,
            relative_loss=card.accuracy.relative_loss,
            gate_passed=card.gate.passed,
            size_bytes=card.size_bytes,
        )
    return facts
