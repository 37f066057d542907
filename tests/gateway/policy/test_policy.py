"""Variant selection: the most accurate READY variant, and a policy that plugs in through the service."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from gateway.core.config import ModelConfig
from gateway.core.errors import ModelNotReady
from gateway.core.selection.policy import Candidate, MostAccuratePolicy, PolicyContext
from gateway.core.telemetry.observer import RequestEvent
from gateway.core.types import InferRequest
from tests.fixtures.tinyrepo import tiny_card
from tests.gateway.conftest import serving, tiny_request

CONFIG = ModelConfig(name="m", platform="onnxruntime_onnx", max_batch_size=8, inputs=(), outputs=())
CONTEXT = PolicyContext(InferRequest("m", []), rows=1, now_ns=0)


def candidate(
    name: str, relative_loss: float | None = 0.01, passed: bool = True, card: bool = True
) -> Candidate:
    variant = name.split(".")[1]
    facts = tiny_card(name, variant, relative_loss, passed) if card else None
    return Candidate(name, variant, "1", CONFIG, facts, queued=0, inflight=0)


def test_most_accurate_wins() -> None:
    policy = MostAccuratePolicy()
    int8, fp16 = candidate("m.int8", 0.01), candidate("m.fp16", 0.001)
    assert policy.choose("m", [int8, fp16], CONTEXT).model_name == "m.fp16"
    fp32 = candidate("m.fp32", card=False)  # no card: the fp32 reference is exact by definition
    assert policy.choose("m", [int8, fp32, fp16], CONTEXT).model_name == "m.fp32"
    unknown = candidate("m.pruned", card=False)  # no card, not the reference: ranked last
    assert policy.choose("m", [unknown, int8], CONTEXT).model_name == "m.int8"
    failed = candidate("m.fp16", 0.0, passed=False)  # a failed gate ranks below any pass
    assert policy.choose("m", [failed, int8], CONTEXT).model_name == "m.int8"
    tie = candidate("m.a", 0.01)  # equal accuracy: the name decides, so the choice is stable
    assert policy.choose("m", [int8, tie], CONTEXT).model_name == "m.a"
    with pytest.raises(ModelNotReady, match="no variant of model 'm' is ready"):
        policy.choose("m", [], CONTEXT)


class CheapestPolicy:
    """A stand-in for a later policy: the smallest variant, learning from what it observes."""

    def __init__(self) -> None:
        self.seen: list[RequestEvent] = []

    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        return min(candidates, key=lambda c: c.card.size_bytes if c.card else 1 << 62)

    def observe(self, event: RequestEvent) -> None:
        self.seen.append(event)


async def test_a_policy_plugs_in_without_touching_anything_else(tiny_repo: Path) -> None:
    policy = CheapestPolicy()
    ids = np.array([[1, 2]], dtype=np.int64)
    async with serving(tiny_repo, policy=policy) as service:
        assert (await service.infer(tiny_request("tiny", ids))).model_name == "tiny.int8"
        assert (await service.infer(tiny_request("tiny.fp32", ids))).model_name == "tiny.fp32"  # pinned
    assert [(e.logical_model, e.model, e.outcome.value) for e in policy.seen] == [
        ("tiny", "tiny.int8", "success"),
        ("tiny", "tiny.fp32", "success"),
    ]
