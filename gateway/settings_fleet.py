"""Where batches run: in-process onnxruntime, a fleet of Triton servers, or both (``varigate serve
--triton-servers HOST:PORT,... --placement local|remote|both --variant-placement NAME=PLACE,...``; also
``VARIGATE_TRITON_SERVERS`` ...). ``Settings`` inherits them; ``gateway.backends.placement`` applies them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

from gateway.backends.triton import FleetConfig

PlacementName = Literal["local", "remote", "both"]
_FLEET: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(FleetConfig)}  # its defaults


def parse_variant_placement(text: str) -> dict[str, PlacementName]:
    """``"minilm.int8=remote,minilm.fp32=local"`` -> ``{variant: placement}``; errors name the entry."""
    out: dict[str, PlacementName] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, where = (p.strip() for p in entry.partition("="))
        if not sep or not name or where not in ("local", "remote", "both"):
            raise ValueError(f"variant placement {entry!r} must be NAME=local|remote|both")
        out[name] = where  # type: ignore[assignment]  # checked against the three names just above
    return out


class FleetSettings(BaseSettings):
    triton_servers: str = Field(
        "",
        description="Triton servers batches may run on, as HOST:GRPC_PORT,... (empty: none; every variant "
        "runs in-process). Their health, loaded models and circuit state are tracked in the background.",
    )
    triton_protocol: Literal["grpc", "http"] = Field(
        _FLEET["protocol"], description="How batches reach the Triton servers (binary tensors either way)."
    )
    triton_slots_per_server: int = Field(
        _FLEET["slots_per_server"],
        ge=1,
        description="Batches in flight per Triton server that the scheduler counts as remote capacity.",
    )
    triton_health_interval_secs: float = Field(
        _FLEET["health_interval_s"], gt=0, description="Seconds between health checks of each Triton server."
    )
    placement: PlacementName | None = Field(
        None,
        description="Where variants run: 'local' (in-process onnxruntime), 'remote' (the Triton servers), "
        "'both' (local first, a batch overflows to the servers when it would be late waiting for a local "
        "core). Default: 'both' with --triton-servers, else 'local'.",
    )
    variant_placement: str = Field(
        "", description="Per-variant placement overriding --placement, as NAME=local|remote|both,..."
    )

    @field_validator("triton_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        if value.strip():
            FleetConfig.parse(value)
        return value

    @field_validator("variant_placement")
    @classmethod
    def _check_variant_placement(cls, value: str) -> str:
        parse_variant_placement(value)
        return value

    @model_validator(mode="after")
    def _check_remote_needs_servers(self) -> FleetSettings:
        wanted = {self.placement, *parse_variant_placement(self.variant_placement).values()}
        if not self.triton_servers.strip() and wanted & {"remote", "both"}:
            raise ValueError("placement 'remote' or 'both' needs --triton-servers")
        return self

    @property
    def default_placement(self) -> PlacementName:
        return self.placement or ("both" if self.triton_servers.strip() else "local")

    def fleet_config(self) -> FleetConfig | None:
        if not self.triton_servers.strip():
            return None
        return FleetConfig.parse(
            self.triton_servers,
            protocol=self.triton_protocol,
            slots_per_server=self.triton_slots_per_server,
            health_interval_s=self.triton_health_interval_secs,
        )
