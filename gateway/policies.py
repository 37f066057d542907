"""Building the selection policy (and the drift monitor) that ``Settings`` name (``VARIGATE_POLICY``):
``slo`` (late binding, the default) | ``per-request`` (the SLO policy that binds each request at arrival, a
baseline) | ``most-accurate`` | ``static:<variant>`` | ``infaas``.

``gateway.settings`` validates the name with ``parse_policy``; ``build_policy`` reads only the fields that
``PolicySettings`` lists (``Settings`` has them), so this module does not import the settings back.
"""

from __future__ import annotations

from typing import Protocol

from gateway.core.drift.monitor import DriftConfig, DriftMonitor
from gateway.core.selection.baselines import InfaasPolicy, StaticPolicy
from gateway.core.selection.events import PolicyObserver
from gateway.core.selection.late import LateBinding
from gateway.core.selection.policy import MostAccuratePolicy, Policy
from gateway.core.selection.slo_policy import Infeasible, SloConfig, SloPolicy

POLICIES = ("slo", "per-request", "most-accurate", "static:<variant>", "infaas")


def parse_policy(spec: str) -> tuple[str, str]:
    """``"static:int8"`` -> ``("static", "int8")``; ``ValueError`` names the choices."""
    kind, _, arg = spec.strip().partition(":")
    if kind == "static" and arg.strip():
        return kind, arg.strip()
    if kind in ("slo", "per-request", "most-accurate", "infaas") and not arg:
        return kind, ""
    raise ValueError(f"unknown policy {spec!r}; expected one of {', '.join(POLICIES)}")


class PolicySettings(Protocol):
    """The settings ``build_policy`` reads (``gateway.settings.Settings`` documents each)."""

    @property
    def policy(self) -> str: ...
    @property
    def shadow_fraction(self) -> float: ...
    @property
    def drift_window(self) -> int: ...
    @property
    def drift_min_samples(self) -> int: ...
    @property
    def shadow_max_share(self) -> float: ...
    @property
    def shadow_max_concurrent(self) -> int: ...
    @property
    def drift_alpha(self) -> float: ...
    @property
    def drift_horizon(self) -> int: ...
    @property
    def infaas_blacklist_secs(self) -> float: ...
    @property
    def slo_margin_fraction(self) -> float: ...
    @property
    def slo_margin_ms(self) -> float: ...
    @property
    def slo_infeasible(self) -> str: ...
    @property
    def accuracy_budget(self) -> float: ...
    @property
    def accuracy_budget_window(self) -> int: ...
    @property
    def policy_step_up_after_secs(self) -> float: ...
    @property
    def policy_min_dwell_secs(self) -> float: ...
    @property
    def policy_headroom(self) -> float: ...


def build_policy(settings: PolicySettings, observer: PolicyObserver) -> tuple[Policy, DriftMonitor]:
    """The policy ``settings.policy`` names, and the drift monitor (it takes ground-truth labels; it
    shadows nothing when ``shadow_fraction`` is 0). Only the ``slo`` and ``per-request`` policies leave
    demoted variants out; every policy's traffic is watched."""
    kind, arg = parse_policy(settings.policy)
    config = DriftConfig(
        shadow_fraction=settings.shadow_fraction,
        window=settings.drift_window,
        min_samples=settings.drift_min_samples,
        shadow_max_share=settings.shadow_max_share,
        shadow_max_concurrent=settings.shadow_max_concurrent,
        alpha=settings.drift_alpha,
        horizon=settings.drift_horizon,
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
        if kind == "per-request":
            policy = SloPolicy(slo, drift=drift, observer=observer)
        else:
            policy = LateBinding(slo, drift=drift, observer=observer)
    return policy, drift
