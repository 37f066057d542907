"""Gateway settings: every option of ``varigate serve``, each also settable as ``VARIGATE_<NAME>``.

Names follow Triton's flags where one exists (``--model-control-mode``, ``--repository-poll-secs``,
``--load-model``, ``--http-restricted-api``, ``--grpc-restricted-protocol``, ``--exit-timeout-secs``,
``--strict-readiness``). List settings read from the environment are ``;``-separated.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from gateway.backends.base import DEFAULT_BACKEND
from gateway.core.drift.monitor import DriftConfig
from gateway.core.models.health import HealthConfig
from gateway.core.selection.baselines import InfaasPolicy
from gateway.core.selection.slo import SloConfig
from gateway.policies import parse_policy
from gateway.protocol.codec import DEFAULT_LIMITS, MAX_REQUEST_BYTES
from gateway.protocol.restricted import parse_restriction
from gateway.settings_fleet import FleetSettings
from gateway.settings_limits import ServerLimits
from varigate.contract.execution import DEFAULT_LAYOUT, LayoutName

ENV_PREFIX = "VARIGATE_"
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
ControlModeName = Literal["none", "poll", "explicit"]
InfeasibleName = Literal["serve", "reject", "shed"]
EventLoopName = Literal["auto", "asyncio", "uvloop"]

# Defaults the core (and the protocol layer) also has come from its configuration, never a second literal.
_SLO, _DRIFT, _HEALTH = SloConfig(), DriftConfig(), HealthConfig()
_INFAAS_BLACKLIST_S: float = inspect.signature(InfaasPolicy).parameters["blacklist_s"].default


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    return value


class Settings(FleetSettings, ServerLimits):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    repository: Path = Field(Path("model_repository"), description="Triton-style model repository to serve.")
    http_host: str = Field("127.0.0.1", description="Address the HTTP (KServe v2 REST) server binds.")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP port; 0 picks a free port.")
    grpc_host: str = Field("127.0.0.1", description="Address the gRPC server binds.")
    grpc_port: int = Field(8001, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_host: str = Field("127.0.0.1", description="Address the Prometheus /metrics server binds.")
    metrics_port: int = Field(8002, ge=0, le=65535, description="Metrics port; 0 picks a free port.")
    allow_http: bool = Field(True, description="Serve the HTTP protocol.")
    allow_grpc: bool = Field(True, description="Serve the gRPC protocol.")
    allow_metrics: bool = Field(True, description="Serve Prometheus metrics on their own port.")
    metrics_triton_compatible: bool = Field(
        True,
        description="Also expose Triton's nv_inference_* metrics under Triton's own names (so Triton "
        "dashboards work; promtool's lint flags those names). Off: only the varigate_* family.",
    )
    model_control_mode: ControlModeName = Field(
        "none",
        description="Triton's model control: 'none' loads every model at start, 'poll' also applies "
        "repository changes every poll interval, 'explicit' loads only through the repository API.",
    )
    load_model: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models to load at start in 'explicit' mode ('*' for all); ';'-separated in the env.",
    )
    repository_poll_secs: float = Field(
        15.0, gt=0, description="Seconds between repository scans in 'poll' mode (Triton's default 15)."
    )
    strict_readiness: bool = Field(
        True, description="Server readiness requires every model that should be loaded to be ready."
    )
    backend: str = Field(
        DEFAULT_BACKEND,
        description="Backend that runs batches, as 'module:attr' (default: in-process onnxruntime).",
    )
    layout: LayoutName = Field(
        DEFAULT_LAYOUT,
        description="How onnxruntime uses the cores (varigate/contract/execution.py): 'adaptive' = a batch "
        "alone runs on all cores, batches under load one core each; 'wide' = one batch at a time on all "
        "cores, spinning off; 'wide-spin' = the same, spinning on; 'split' = one core per batch. The --ort-* "
        "options and --executor-workers override parts of it.",
    )
    ort_intra_op_threads: int = Field(
        0, ge=0, description="onnxruntime intra-op threads per session; 0 = the layout's."
    )
    ort_inter_op_threads: int = Field(1, ge=1, description="onnxruntime inter-op threads per session.")
    ort_allow_spinning: Literal["auto", "on", "off"] = Field(
        "auto", description="onnxruntime's spin-waiting between operators; 'auto' = the layout's."
    )
    executor_workers: int = Field(
        0,
        ge=0,
        description="Batches that run at once, all models together (the compute pool's threads); 0 = the "
        "layout's (workers x intra-op threads must not exceed the cores).",
    )
    max_request_bytes: int = Field(
        MAX_REQUEST_BYTES,
        gt=0,
        description="Largest HTTP request body (after decompression) and gRPC message accepted; larger "
        "requests get 413 / RESOURCE_EXHAUSTED.",
    )
    max_request_elements: int = Field(
        DEFAULT_LIMITS.max_elements,
        gt=0,
        description="Most tensor elements one inference request may declare, all inputs together; checked "
        "against the bytes present before anything is allocated (400 / INVALID_ARGUMENT when over).",
    )
    max_tensor_dims: int = Field(
        DEFAULT_LIMITS.max_dims,
        gt=0,
        description="Most dimensions one input tensor may declare (400 / INVALID_ARGUMENT).",
    )
    max_request_inputs: int = Field(
        DEFAULT_LIMITS.max_inputs, gt=0, description="Most input tensors one inference request may carry."
    )
    http_restricted_api: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Triton's --http-restricted-api groups '<api>,...:<header>=<value>' (e.g. "
        "'model-repository,statistics:admin-key=secret'); ';'-separated in the env.",
    )
    grpc_restricted_protocol: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Triton's --grpc-restricted-protocol groups '<api>,...:<key>=<value>'; clients send "
        "metadata 'triton-grpc-protocol-<key>'. ';'-separated in the env.",
    )
    exit_timeout_secs: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM/SIGINT, how long to wait for accepted requests to finish before exiting.",
    )
    circuit_breaker_failures: int = Field(
        _HEALTH.failures_to_open,
        ge=1,
        description="Consecutive failed or timed-out batches after which a variant's circuit opens.",
    )
    circuit_breaker_cooldown_secs: float = Field(
        _HEALTH.cooldown_s,
        gt=0,
        description="Seconds an open circuit keeps requests to the logical model off a variant.",
    )
    policy: str = Field(
        "slo",
        description="How a variant is chosen for requests that name a logical model: 'slo' (late "
        "binding: per batch, when a core is free, the most accurate variant that meets every deadline in "
        "it and behind it, inside the accuracy budget, leaving out dominated and drifting variants), "
        "'per-request' (the previous SLO policy: each request bound at arrival, with a ceiling and "
        "hysteresis; a baseline), 'most-accurate', 'static:<variant>' (always that one, e.g. "
        "'static:int8'), or 'infaas' (INFaaS-style baseline).",
    )
    slo_margin_fraction: float = Field(
        _SLO.margin_fraction,
        ge=0,
        lt=1,
        description="Fraction of a request's SLO the 'slo' policy keeps free as safety margin.",
    )
    slo_margin_ms: float = Field(
        _SLO.margin_ms, ge=0, description="Safety margin in milliseconds, added to the fraction."
    )
    slo_infeasible: InfeasibleName = Field(
        _SLO.infeasible.value,
        description="A request no variant can serve in time: 'serve' it late (earliest predicted answer), "
        "'reject' it (429 / RESOURCE_EXHAUSTED) when not even an idle variant could meet its SLO, or 'shed' "
        "it whenever the queues make every variant late.",
    )
    accuracy_budget: float = Field(
        _SLO.accuracy_budget,
        ge=0,
        le=1,
        description="Long-run mean relative accuracy loss allowed per logical model; variants whose loss "
        "exceeds it serve only when nothing within it meets the SLO and the running mean stays within it.",
    )
    accuracy_budget_window: int = Field(
        _SLO.budget_window, ge=1, description="Requests the running mean accuracy loss is weighted over."
    )
    policy_step_up_after_secs: float = Field(
        _SLO.step_up_after_s,
        ge=0,
        description="Seconds of sustained headroom before the 'per-request' policy steps up a variant.",
    )
    policy_min_dwell_secs: float = Field(
        _SLO.min_dwell_s,
        ge=0,
        description="Seconds the 'per-request' policy stays on a variant after a switch before stepping up.",
    )
    policy_headroom: float = Field(
        _SLO.headroom,
        ge=0,
        lt=1,
        description="'per-request' policy: step up only while the arrival rate stays below (1 - headroom) "
        "of what the more accurate variant sustains within the SLO.",
    )
    shadow_fraction: float = Field(
        _DRIFT.shadow_fraction,
        ge=0,
        le=1,
        description="Fraction of requests also run on a second variant (compressed vs the fp32 reference), "
        "at any load, under the cost cap, to measure live accuracy drift; 0 turns shadowing off.",
    )
    shadow_max_share: float = Field(
        _DRIFT.shadow_max_share,
        gt=0,
        le=1,
        description="Cost cap: shadows of a logical model use at most this share of its recent compute; a "
        "sampled request over it is skipped (busy).",
    )
    shadow_max_concurrent: int = Field(
        _DRIFT.shadow_max_concurrent,
        ge=1,
        description="Cost cap: shadows of one logical model queued or running at once.",
    )
    drift_window: int = Field(
        _DRIFT.window, ge=1, description="Shadowed requests in the reported live agreement."
    )
    drift_min_samples: int = Field(
        _DRIFT.min_samples,
        ge=1,
        description="Shadowed requests after a start or a verdict before the next verdict.",
    )
    drift_alpha: float = Field(
        _DRIFT.alpha,
        gt=0,
        lt=1,
        description="Probability of a false demotion (or recovery) per --drift-horizon shadowed requests "
        "of a variant version.",
    )
    drift_horizon: int = Field(
        _DRIFT.horizon,
        ge=1,
        description="Shadowed requests over which --drift-alpha is spent (10000: about an hour at 55 "
        "req/s, 5 % shadowed).",
    )
    infaas_blacklist_secs: float = Field(
        _INFAAS_BLACKLIST_S,
        ge=0,
        description="How long the 'infaas' policy avoids a variant it found overloaded.",
    )
    log_level: LogLevel = Field("info", description="Log level of the gateway and its servers.")
    event_loop: EventLoopName = Field(
        "auto",
        description="The event loop that serves HTTP, gRPC and the batchers: 'uvloop' (less CPU time per "
        "request), 'asyncio' (the standard library's), 'auto' = uvloop when it is installed, else asyncio.",
    )

    @field_validator("policy")
    @classmethod
    def _check_policy(cls, value: str) -> str:
        parse_policy(value)
        return value

    @field_validator("load_model", "http_restricted_api", "grpc_restricted_protocol", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("http_restricted_api", "grpc_restricted_protocol")
    @classmethod
    def _check_restrictions(cls, value: list[str]) -> list[str]:
        for spec in value:
            parse_restriction(spec)
        return value

    @model_validator(mode="after")
    def _check_ports(self) -> Settings:
        served = [
            (name, port)
            for name, port, on in (
                ("http_port", self.http_port, self.allow_http),
                ("grpc_port", self.grpc_port, self.allow_grpc),
                ("metrics_port", self.metrics_port, self.allow_metrics),
            )
            if on and port
        ]
        ports = [p for _, p in served]
        if len(set(ports)) != len(ports):
            raise ValueError(f"ports must differ, got {dict(served)}")
        return self
