"""A scripted ``InferenceService`` for testing the protocol adapters without models."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.core import errors
from gateway.core.api import (
    DurationStat,
    ModelMetadata,
    ModelStatistics,
    RepositoryEntry,
    ServerMetadata,
    TensorMeta,
)
from gateway.core.types import InferRequest, InferResponse, Tensor


class FakeService:
    """``echo`` returns each input as ``OUT_<name>``; ``fail`` raises the GatewayError subclass named by
    parameter ``error``; parameter ``delay_ms`` delays a response; anything else is not found."""

    def __init__(self) -> None:
        self.calls: list[InferRequest] = []
        self.repository_calls: list[tuple[str, str, Any]] = []
        self.ready = True

    async def infer(self, request: InferRequest) -> InferResponse:
        self.calls.append(request)
        delay = request.parameters.get("delay_ms", 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        if request.model_name == "fail":
            raise getattr(errors, request.parameters["error"])(f"scripted {request.parameters['error']}")
        if request.model_name != "echo":
            raise errors.ModelNotFound(f"unknown model {request.model_name!r}")
        if request.model_version not in ("", "1"):
            raise errors.ModelNotFound(f"model 'echo' has no version {request.model_version!r}")
        outputs = [Tensor("OUT_" + t.name, t.datatype, t.shape, t.data) for t in request.inputs]
        if request.outputs is not None:
            wanted = {o.name for o in request.outputs}
            unknown = wanted - {o.name for o in outputs}
            if unknown:
                raise errors.InvalidInput(f"model 'echo' has no output {min(unknown)!r}")
            outputs = [o for o in outputs if o.name in wanted]
        return InferResponse("echo.v", "1", outputs, request.id, {"varigate_variant": "echo.v"})

    def server_live(self) -> bool:
        return True

    def server_ready(self) -> bool:
        return self.ready

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("varigate", "0.1.0", ("binary_tensor_data", "statistics"))

    def model_ready(self, name: str, version: str = "") -> bool:
        return name == "echo"

    def _known(self, name: str) -> None:
        if name != "echo":
            raise errors.ModelNotFound(f"unknown model {name!r}")

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        self._known(name)
        t = (TensorMeta("x", "FP32", (-1, 4)),)
        return ModelMetadata("echo", ("1",), "onnxruntime_onnx", t, t, {"logical_model": "echo"})

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        self._known(name)
        return {
            "name": "echo.v",
            "platform": "onnxruntime_onnx",
            "max_batch_size": 8,
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}],
            "dynamic_batching": {"max_queue_delay_microseconds": 100},
        }

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        if name:
            self._known(name)
        d = DurationStat(3, 3000)
        return [ModelStatistics("echo.v", "1", 1700000000000, 5, 2, d, DurationStat(0, 0), d, d, d, d)]

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        entries = [
            RepositoryEntry("echo.v", "1", "READY"),
            RepositoryEntry("old", "1", "UNAVAILABLE", "unloaded"),
        ]
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    async def load_model(self, name: str, parameters: dict[str, Any] | None = None) -> None:
        self._known(name)
        self.repository_calls.append(("load", name, parameters))

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self._known(name)
        self.repository_calls.append(("unload", name, unload_dependents))
