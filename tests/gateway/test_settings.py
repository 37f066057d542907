"""Each ``Settings`` default has one source: where the core (or a protocol server) has the same default in its
configuration, ``Settings`` takes it from there. This test states which setting feeds which configuration
field and asserts the two defaults are equal, so that they can never drift apart; every other setting is
listed as the gateway's own, so a new setting must be classified here."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from gateway.backends.triton import FleetConfig
from gateway.core.drift.monitor import DriftConfig
from gateway.core.models.health import HealthConfig
from gateway.core.selection.baselines import InfaasPolicy
from gateway.core.selection.slo import SloConfig
from gateway.protocol.codec import RequestLimits
from gateway.protocol.grpc_limits import GrpcLimits
from gateway.protocol.http import HttpOptions
from gateway.protocol.http_server import HttpLimits
from gateway.settings import Settings

# setting -> (configuration class, its field); main.py / policies.py build that field from the setting.
FROM_CONFIG: dict[str, tuple[type[Any], str]] = {
    "max_request_bytes": (HttpOptions, "max_body_bytes"),
    "max_request_elements": (RequestLimits, "max_elements"),
    "max_tensor_dims": (RequestLimits, "max_dims"),
    "max_request_inputs": (RequestLimits, "max_inputs"),
    "circuit_breaker_failures": (HealthConfig, "failures_to_open"),
    "circuit_breaker_cooldown_secs": (HealthConfig, "cooldown_s"),
    "slo_margin_fraction": (SloConfig, "margin_fraction"),
    "slo_margin_ms": (SloConfig, "margin_ms"),
    "slo_infeasible": (SloConfig, "infeasible"),
    "accuracy_budget": (SloConfig, "accuracy_budget"),
    "accuracy_budget_window": (SloConfig, "budget_window"),
    "policy_step_up_after_secs": (SloConfig, "step_up_after_s"),
    "policy_min_dwell_secs": (SloConfig, "min_dwell_s"),
    "policy_headroom": (SloConfig, "headroom"),
    "shadow_fraction": (DriftConfig, "shadow_fraction"),
    "drift_window": (DriftConfig, "window"),
    "drift_min_samples": (DriftConfig, "min_samples"),
    "shadow_max_share": (DriftConfig, "shadow_max_share"),
    "shadow_max_concurrent": (DriftConfig, "shadow_max_concurrent"),
    "drift_alpha": (DriftConfig, "alpha"),
    "drift_horizon": (DriftConfig, "horizon"),
    "listen_backlog": (HttpLimits, "backlog"),
    "http_max_connections": (HttpLimits, "max_connections"),
    "http_keep_alive_secs": (HttpLimits, "keep_alive_s"),
    "http_header_timeout_secs": (HttpLimits, "header_timeout_s"),
    "http_body_timeout_secs": (HttpLimits, "body_timeout_s"),
    "http_max_header_bytes": (HttpLimits, "max_header_bytes"),
    "grpc_max_connections": (GrpcLimits, "max_connections"),
    "grpc_max_concurrent_rpcs": (GrpcLimits, "max_concurrent_rpcs"),
    "grpc_max_stream_inflight": (GrpcLimits, "max_stream_inflight"),
    "grpc_keepalive_secs": (GrpcLimits, "keepalive_s"),
    "grpc_keepalive_timeout_secs": (GrpcLimits, "keepalive_timeout_s"),
    "grpc_max_connection_idle_secs": (GrpcLimits, "max_connection_idle_s"),
    "grpc_max_connection_age_secs": (GrpcLimits, "max_connection_age_s"),
    "grpc_handshake_timeout_secs": (GrpcLimits, "handshake_timeout_s"),
    "triton_protocol": (FleetConfig, "protocol"),
    "triton_slots_per_server": (FleetConfig, "slots_per_server"),
    "triton_health_interval_secs": (FleetConfig, "health_interval_s"),
}

# Settings whose default only the gateway has: listeners, wiring, the backend's knobs, the policy's name, and
# the queue bounds it gives configs that leave Triton's 0 (unbounded).
GATEWAY_OWN = {
    "repository",
    "http_host",
    "http_port",
    "grpc_host",
    "grpc_port",
    "metrics_host",
    "metrics_port",
    "allow_http",
    "allow_grpc",
    "allow_metrics",
    "metrics_triton_compatible",
    "model_control_mode",
    "load_model",
    "repository_poll_secs",
    "strict_readiness",
    "backend",
    "layout",
    "ort_intra_op_threads",
    "ort_allow_spinning",
    "ort_inter_op_threads",
    "executor_workers",
    "http_restricted_api",
    "grpc_restricted_protocol",
    "exit_timeout_secs",
    "policy",
    "infaas_blacklist_secs",  # a parameter of InfaasPolicy, not a configuration class: checked below
    "log_level",
    "event_loop",
    "default_max_queue_size",
    "default_queue_timeout_ms",
    "triton_servers",  # none by default: every variant in-process
    "placement",  # None: 'both' with Triton servers, else 'local'
    "variant_placement",
}


def _config_default(cls: type[Any], name: str) -> Any:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field.default is not dataclasses.MISSING:
        return field.default
    assert field.default_factory is not dataclasses.MISSING, f"{cls.__name__}.{name} has no default"
    return field.default_factory()


def _settings_default(name: str) -> Any:
    return Settings.model_fields[name].get_default(call_default_factory=True)


@pytest.mark.parametrize("setting", sorted(FROM_CONFIG))
def test_setting_default_is_its_configuration_default(setting: str) -> None:
    cls, name = FROM_CONFIG[setting]
    expected = _config_default(cls, name)
    actual = _settings_default(setting)
    assert actual == expected, f"Settings.{setting} = {actual!r}, but {cls.__name__}.{name} = {expected!r}"
    assert type(actual) is type(getattr(expected, "value", expected)), setting


def test_every_setting_is_classified() -> None:
    fields = set(Settings.model_fields)
    assert not set(FROM_CONFIG) & GATEWAY_OWN
    assert fields - set(FROM_CONFIG) - GATEWAY_OWN == set(), "classify the new setting in this test"
    assert set(FROM_CONFIG) | GATEWAY_OWN == fields, "a setting listed here no longer exists"


def test_infaas_blacklist_default_is_the_policy_default() -> None:
    expected = inspect.signature(InfaasPolicy).parameters["blacklist_s"].default
    assert _settings_default("infaas_blacklist_secs") == expected == 2.0


def test_grpc_message_limit_is_the_http_body_limit() -> None:
    """One request-size setting feeds both servers, so their own defaults must agree with it too."""
    assert (
        GrpcLimits().max_message_bytes
        == HttpOptions().max_body_bytes
        == _settings_default("max_request_bytes")
    )


def test_a_changed_configuration_default_is_caught() -> None:
    """The check itself can fail: a configuration whose default differs from the setting's is reported."""
    changed = dataclasses.make_dataclass("Changed", [("cooldown_s", float, dataclasses.field(default=9.0))])
    assert _config_default(changed, "cooldown_s") != _settings_default("circuit_breaker_cooldown_secs")


def test_placement_settings_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="needs --triton-servers"):
        Settings(placement="remote")
    with pytest.raises(ValueError, match=r"'tiny.int8=far' must be NAME=local\|remote\|both"):
        Settings(triton_servers="127.0.0.1:8001", variant_placement="tiny.fp32=local,tiny.int8=far")
    with pytest.raises(ValueError, match="entry 2"):
        Settings(triton_servers="127.0.0.1:8001,nohost")
    both = Settings(triton_servers="127.0.0.1:8001, 127.0.0.1:9001", variant_placement="tiny.int8=remote")
    assert both.default_placement == "both" and Settings().default_placement == "local"
    fleet = both.fleet_config()
    assert fleet is not None and fleet.servers == ("127.0.0.1:8001", "127.0.0.1:9001")
