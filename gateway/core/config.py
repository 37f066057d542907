"""A Triton model configuration as plain core dataclasses, and one variant as the repository holds it.

``gateway/repository.py`` parses ``config.pbtxt`` with Triton's protobuf schema and builds these; the
core (registry, batcher, validation) reads only these. Standard library and numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.core.types import Datatype
from varigate.contract.card import VariantCard
from varigate.contract.keys import (
    PARAM_ADAPTIVE_DELAY,
    PARAM_LOGICAL_MODEL,
    PARAM_PAD_INPUTS,
    PARAM_VARIANT,
)


def datatype_from_triton(name: str) -> Datatype:
    """``"TYPE_FP32"`` (Triton's DataType enum name) -> ``Datatype.FP32``; ``TYPE_STRING`` is BYTES."""
    short = name.removeprefix("TYPE_")
    if short == "STRING":
        return Datatype.BYTES
    try:
        return Datatype(short)
    except ValueError:
        raise ValueError(f"Triton data type {name!r} has no KServe v2 datatype the gateway serves") from None


class TimeoutAction(StrEnum):
    REJECT = "REJECT"
    DELAY = "DELAY"


class VersionPolicyKind(StrEnum):
    LATEST = "latest"
    ALL = "all"
    SPECIFIC = "specific"


@dataclass(frozen=True, slots=True)
class TensorConfig:
    name: str
    datatype: Datatype
    dims: tuple[int, ...]  # without the batch dimension when the model batches; -1 = variable
    optional: bool = False
    variable_axes: tuple[int, ...] = field(init=False, repr=False, compare=False)  # axes whose size is -1

    def __post_init__(self) -> None:
        axes = tuple(i for i, d in enumerate(self.dims) if d == -1)
        object.__setattr__(self, "variable_axes", axes)  # derived once: read several times per request


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    timeout_action: TimeoutAction = TimeoutAction.REJECT
    default_timeout_us: int = 0  # 0 = requests never time out in the queue
    allow_timeout_override: bool = False
    max_queue_size: int = 0  # 0 = unbounded


@dataclass(frozen=True, slots=True)
class DynamicBatching:
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    priority_levels: int = 0  # 0 = priorities are not used; else levels 1 (highest) .. priority_levels
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy = QueuePolicy()
    priority_queue_policy: dict[int, QueuePolicy] = field(default_factory=dict)

    def queue_policy(self, level: int) -> QueuePolicy:
        return self.priority_queue_policy.get(level, self.default_queue_policy)


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    kind: VersionPolicyKind = VersionPolicyKind.LATEST
    num_versions: int = 1  # LATEST
    versions: tuple[int, ...] = ()  # SPECIFIC

    def select(self, available: set[int] | list[int]) -> tuple[int, ...]:
        """The versions to serve out of those on disk, ascending."""
        found = sorted(available)
        if self.kind is VersionPolicyKind.ALL:
            return tuple(found)
        if self.kind is VersionPolicyKind.SPECIFIC:
            return tuple(v for v in found if v in self.versions)
        return tuple(found[-max(1, self.num_versions) :]) if found else ()


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The parts of Triton's ``ModelConfig`` the gateway acts on."""

    name: str
    platform: str
    max_batch_size: int  # 0 = the model does not batch: shapes are full shapes
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    backend: str = ""
    dynamic_batching: DynamicBatching | None = None
    version_policy: VersionPolicy = VersionPolicy()
    instance_count: int = 1
    default_model_filename: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    # derived from the fields once (every request reads them): see the properties below
    _derived: tuple[str, str, bool, frozenset[str] | str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        logical = self.parameters.get(PARAM_LOGICAL_MODEL, "") or self.name
        variant = self.parameters.get(PARAM_VARIANT, "") or self.name
        adaptive = self.parameters.get(PARAM_ADAPTIVE_DELAY, "true").strip().lower() not in (
            "false",
            "0",
            "no",
        )
        object.__setattr__(self, "_derived", (logical, variant, adaptive, self._pad_inputs()))

    @property
    def logical_model(self) -> str:
        return self._derived[0]

    @property
    def variant(self) -> str:
        return self._derived[1]

    def input(self, name: str) -> TensorConfig:
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(f"model {self.name!r} has no input {name!r}; inputs: {[t.name for t in self.inputs]}")

    def output(self, name: str) -> TensorConfig:
        for t in self.outputs:
            if t.name == name:
                return t
        raise KeyError(
            f"model {self.name!r} has no output {name!r}; outputs: {[t.name for t in self.outputs]}"
        )

    @property
    def adaptive_delay(self) -> bool:
        """Whether an incomplete batch may stop waiting early when no arrivals are expected in time."""
        return self._derived[2]

    @property
    def pad_inputs(self) -> frozenset[str]:
        """Inputs the batcher may zero-pad along their variable axes to batch different lengths
        (ValueError when the parameter names inputs the model does not have)."""
        pad = self._derived[3]
        if isinstance(pad, str):
            raise ValueError(pad)
        return pad

    def _pad_inputs(self) -> frozenset[str] | str:
        """``pad_inputs``, or why the parameter is wrong."""
        raw = self.parameters.get(PARAM_PAD_INPUTS)
        if raw is None:
            return frozenset(
                t.name for t in self.inputs if t.variable_axes and t.datatype is not Datatype.BYTES
            )
        names = frozenset(n.strip() for n in raw.split(",") if n.strip() and n.strip() != "none")
        unknown = names - {t.name for t in self.inputs}
        if unknown:
            return f"model {self.name!r}: {PARAM_PAD_INPUTS} names unknown inputs {sorted(unknown)}"
        return names


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One Triton model (one variant) as found in the repository, before anything is loaded."""

    name: str
    path: Path  # <repo>/<name>
    config: ModelConfig
    config_json: dict[str, Any]  # Triton's JSON form of config.pbtxt (protobuf field names)
    versions: dict[int, str]  # version -> fingerprint of its directory, already filtered by version policy
    fingerprint: str  # of config.pbtxt and the card: a change means every version reloads
    card: VariantCard | None = None
    card_error: str = ""  # why the card could not be read ("" when there is none or it was read)

    def version_path(self, version: int) -> Path:
        return self.path / str(version)


@dataclass(frozen=True, slots=True)
class RepositoryScan:
    """Everything a repository holds right now: parsed models and those that failed to parse."""

    models: dict[str, ModelSpec]
    errors: dict[str, str] = field(default_factory=dict)  # model name -> why it could not be read
