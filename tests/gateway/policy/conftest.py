"""Real gateways for the policy tests: ``varigate serve`` in a subprocess on loopback, over the tiny
repository with a slow fp32 and a fast int8 (``tests.gateway.policy.slow:SlowBackend`` sleeps what their cards
profile), driven by ``tritonclient``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.policy.support import DELAYS, SLOW, GatewayProcess, run_gateway

PAIR = "tests.gateway.policy.slow:PairBackend"

FAST_POLICY = ["--policy-step-up-after-secs", "1", "--policy-min-dwell-secs", "1"]


@pytest.fixture(scope="module")
def slo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """fp32 + int8, default SLO 250 ms, no shadows (so nothing but the policy moves the mix), under the
    per-request policy (late binding's tests are ``test_late_binding``)."""
    yield from run_gateway(
        tmp_path_factory.mktemp("slo"),
        ["--backend", SLOW, "--policy", "per-request", *FAST_POLICY, "--shadow-fraction", "0"],
        variants=("fp32", "int8"),
        delays_ms=DELAYS,
        default_slo_ms=250,
        classifier=False,
    )


@pytest.fixture(scope="module")
def drift_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """fp32 + int8 + the corrupted ``bad`` (its card claims less loss than int8's, and more speed) on a
    two-slot pool; every request shadowed, under the cost cap; the classifier keeps its card, for labels."""
    yield from run_gateway(
        tmp_path_factory.mktemp("drift"),
        ["--backend", PAIR, *FAST_POLICY, "--shadow-fraction", "1", "--drift-min-samples", "10"],
        variants=("fp32", "int8", "bad"),
        delays_ms=DELAYS,
        losses=(("bad", 0.005),),
        default_slo_ms=250,
        classifier_card=True,
    )
