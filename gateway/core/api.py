"""The data plane's interface: what every protocol adapter calls (the MLServer split: adapters only
decode, call this, encode). ``gateway.core.service.Service`` implements it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.types import InferRequest, InferResponse


@dataclass(frozen=True, slots=True)
class TensorMeta:
    name: str
    datatype: str  # KServe datatype name, e.g. "INT64"
    shape: tuple[int, ...]  # with the batch dimension as -1 when the model batches


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    parameters: dict[str, Any] = field(default_factory=dict)  # logical model, variants, variant card facts


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    name: str
    version: str
    state: str  # "READY", "UNAVAILABLE", "LOADING", "UNLOADING"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DurationStat:
    count: int
    ns: int


@dataclass(frozen=True, slots=True)
class BatchStat:
    batch_size: int
    compute_infer: DurationStat


@dataclass(frozen=True, slots=True)
class ModelStatistics:
    """Triton's per-model statistics (``/v2/models/{m}/stats``, gRPC ModelStatistics)."""

    name: str
    version: str
    last_inference_ms: int  # wall-clock ms since epoch, as Triton reports it
    inference_count: int  # rows (batch elements) inferred
    execution_count: int  # batches executed
    success: DurationStat
    fail: DurationStat
    queue: DurationStat
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat
    batch_stats: tuple[BatchStat, ...] = ()


class InferenceService(Protocol):
    async def infer(self, request: InferRequest) -> InferResponse: ...

    def server_live(self) -> bool: ...

    def server_ready(self) -> bool: ...

    def server_metadata(self) -> ServerMetadata: ...

    def model_ready(self, name: str, version: str = "") -> bool: ...

    def check_model(self, name: str, version: str = "") -> None:
        """Raise ``ModelNotFound`` or ``ModelNotReady`` (with the reason) unless the model can infer."""
        ...

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata: ...

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        """Triton's model configuration as JSON (protobuf field names), as ``/v2/models/{m}/config``
        returns it; the gRPC adapter turns it back into ``model_config_pb2.ModelConfig``."""
        ...

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]: ...

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]: ...

    async def load_model(self, name: str, parameters: dict[str, Any] | None = None) -> None: ...

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None: ...

    def record_labels(self, model: str, labels: list[tuple[str, object]]) -> tuple[int, list[str]]:
        """Ground-truth labels for earlier requests (by request id) of ``model``: how many were taken,
        and the ids that are unknown."""
        ...
