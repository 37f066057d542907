"""Building the selection policy (and the drift monitor) that ``Settings`` name (``VARIGATE_POLICY``):
``slo`` | ``most-accurate`` | ``static:<variant>`` | ``infaas``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.core.drift import DriftConfig, DriftMonitor
from gateway.core.policy import MostAccuratePolicy, Policy
from gateway.core.policy_baselines import InfaasPolicy, StaticPolicy
from gateway.core.policy_events import PolicyObserver
from gateway.core.policy_slo import Infeasible, SloConfig, SloPolicy

if TYPE_CHECKING:
    from gateway.settings import Settings

POLICIES = ("slo", "most-accurate", "static:<variant>", "infaas")


def parse_policy(spec: str) -> tuple[str, str]:
    """``"static:int8"`` -> ``("static", "int8")``; ``ValueError`` names the choices."""
    kind, _, arg = spec.strip().partition(":")
    if kind == "static" and arg.strip():
        return kind, arg.strip()
    if kind in ("slo", "most-accurate", "infaas") and not arg:
        return kind, ""
    raise ValueError(f"unknown policy {spec!r}; expected one of {', '.join(POLICIES)}")


def build_policy(settings: Settings, observer: PolicyObserver) -> tuple[Policy, DriftMonitor]:
    """The policy ``settings.policy`` names, and the drift monitor (it takes ground-truth labels; it
    shadows nothing when ``shadow_fraction`` is 0). Only the ``slo`` policy leaves demoted variants out;
    every policy's traffic is watched."""
    kind, arg = parse_policy(settings.policy)
    config = DriftConfig(
        shadow_fraction=settings.shadow_fraction,
        window=settings.drift_window,
        min_samples=settings.drift_min_samples,
    )
    drift = DriftMonitor(config, observer)
    policy: Policy
    if kind == "static":
        policy = StaticPolicy(arg, observer)
    elif kind == "infaas":
        policy = InfaasPolicy(settings.infaas_blacklist_secs, observer)
    elif kind == "most-accurate":
        policy = MostAccuratePolicy()
    else:
        slo = SloConfig(
            margin_fraction=settings.slo_margin_fraction,
            margin_ms=settings.slo_margin_ms,
            infeasible=Infeasible(settings.slo_infeasible),
            accuracy_budget=settings.accuracy_budget,
            budget_window=settings.accuracy_budget_window,
            step_up_after_s=settings.policy_step_up_after_secs,
            min_dwell_s=settings.policy_min_dwell_secs,
            headroom=settings.policy_headroom,
        )
        policy = SloPolicy(slo, drift=drift, observer=observer)
    return policy, drift
