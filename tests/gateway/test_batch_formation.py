"""One batch-formation function for the batcher and the policy's predictions (``formation.batches``).

The cases where the two copies used to disagree: a signature split (requests that cannot share a batch),
a preferred-size cut (the new request left for the next batch), and an early fire on an SLO deadline (the
policy used to predict the full ``max_queue_delay``). Each is shown on the pure function and on the
prediction (``formation.plan``), then the batcher's real batches (onnxruntime, behind a gate) are compared
with what the policy predicted while they queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gateway.core.batching.formation import Item, Rules, batches, plan
from gateway.core.batching.padding import shape_signature, signature
from gateway.core.config import DynamicBatching, ModelConfig, TensorConfig
from gateway.core.selection.events import NullPolicyObserver
from gateway.core.selection.policy import Candidate, MostAccuratePolicy, PolicyContext
from gateway.core.selection.slo_policy import SloPolicy
from gateway.core.telemetry.observer import BatchEvent, RequestEvent
from gateway.core.types import Datatype
from varigate.contract.keys import PARAM_LOGICAL_MODEL, PARAM_PAD_INPUTS

from .conftest import Gate, serving, tiny_request

MS = 1_000_000
NOW = 1_000 * MS
LATENCY = {b: (10 + 5 * b) * MS for b in range(1, 9)}.__getitem__  # a batch of b rows: 10 ms + 5 ms a row


def config(preferred: tuple[int, ...] = (), delay_us: int = 0, pad: bool = True) -> ModelConfig:
    return ModelConfig(
        name="m",
        platform="onnxruntime_onnx",
        max_batch_size=8,
        inputs=(TensorConfig("ids", Datatype.INT64, (-1,)),),
        outputs=(TensorConfig("out", Datatype.FP32, (3,)),),
        dynamic_batching=DynamicBatching(preferred_batch_sizes=preferred, max_queue_delay_us=delay_us),
        parameters={PARAM_LOGICAL_MODEL: "m", **({} if pad else {PARAM_PAD_INPUTS: "none"})},
    )


def queued(cfg: ModelConfig, length: int, at_ns: int, deadline_ns: int = 0) -> Item:
    """A one-row request of ``length`` tokens, with the signature the batcher gives its feeds."""
    feeds = {"ids": np.ones((1, length), dtype=np.int64)}
    return Item(1, signature(cfg, feeds), deadline_ns, at_ns)


def test_requests_that_cannot_share_a_batch_are_predicted_in_batches_of_their_own() -> None:
    cfg = config(pad=False)  # unpadded: another length, another signature
    backlog = [queued(cfg, 4, NOW), queued(cfg, 4, NOW), queued(cfg, 6, NOW)]
    new = Item(1, shape_signature(cfg, {"ids": (1, 4)}), 0, NOW)
    formed = list(batches([*backlog, new], Rules.of(cfg)))
    assert [len(b.items) for b in formed] == [2, 1, 1] and formed[-1].items == (new,)
    # the old copy merged all four into one batch of 4 rows (35 ms); three batches run one after another
    assert plan(Rules.of(cfg), backlog, (), new, NOW, LATENCY).finish_ns == NOW + (20 + 15 + 15) * MS
    padded = config()  # padded, the lengths share a batch
    together = [queued(padded, n, NOW) for n in (4, 4, 6)]
    assert [b.rows for b in batches([*together, queued(padded, 4, NOW)], Rules.of(padded))] == [4]


def test_a_preferred_size_cut_leaves_the_new_request_for_the_next_batch() -> None:
    cfg = config(preferred=(2, 4), delay_us=1000)
    backlog = [queued(cfg, 3, NOW - 2 * MS), queued(cfg, 3, NOW - MS)]
    new = queued(cfg, 3, NOW)
    first, second = batches([*backlog, new], Rules.of(cfg))
    assert (first.rows, first.fire_ns) == (2, NOW - MS)  # the oldest waited out max_queue_delay: cut at 2
    assert (second.items, second.fire_ns) == ((new,), NOW + MS)  # the new request waits its own delay
    # the old copy predicted one batch of 3 rows (25 ms); now: 2 rows (20 ms), then 1 (15 ms)
    assert plan(Rules.of(cfg), backlog, (), new, NOW, LATENCY).finish_ns == NOW + (20 + 15) * MS


def test_an_slo_deadline_fires_early_in_the_batcher_and_in_the_prediction() -> None:
    cfg = config(delay_us=800_000)
    new = queued(cfg, 3, NOW, deadline_ns=NOW + 200 * MS)
    (batch,) = batches([new], Rules.of(cfg), compute_ns=10 * MS)
    # twice the recent batch time and a tenth of the SLO kept in hand: 200 - 20 - 20 ms
    assert batch.fire_ns == NOW + 160 * MS
    predicted = plan(Rules.of(cfg), (), (), new, NOW, LATENCY, compute_ns=10 * MS)
    assert predicted.finish_ns == NOW + (160 + 15) * MS  # the old copy: 800 ms of max_queue_delay first
    without_slo = plan(Rules.of(cfg), (), (), queued(cfg, 3, NOW), NOW, LATENCY)
    assert without_slo.finish_ns == NOW + (800 + 15) * MS


class Predicting(MostAccuratePolicy):
    """The most accurate variant, recording the batches formation predicts for each request it routes."""

    def __init__(self) -> None:
        self.predicted: list[list[int]] = []

    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        chosen = super().choose(logical_model, candidates, context)
        view = chosen.queue
        assert view is not None
        shapes = {t.name: t.shape for t in context.request.inputs}
        new = Item(context.rows, shape_signature(chosen.config, shapes), 0, context.now_ns)
        formed = batches([*view.backlog(), new], Rules.of(chosen.config), view.recent_compute_ns())
        self.predicted.append([b.rows for b in formed])
        return chosen


class Batches:
    """An observer of executed batches (rows, in order) and of the queue length."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.queued = 0
        self._changed = asyncio.Event()

    async def until_queued(self, n: int) -> None:
        while self.queued < n:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 10)

    def request_done(self, event: RequestEvent) -> None:
        pass

    def batch_done(self, event: BatchEvent) -> None:
        assert event.ok, event
        self.rows.append(event.rows)

    def queue_changed(self, logical_model: str, model: str, version: str, queued: int, inflight: int) -> None:
        self.queued = queued
        self._changed.set()

    def model_state(self, model: str, version: str, ready: bool) -> None:
        pass


async def test_the_batcher_runs_the_batches_the_policy_predicted(
    build: Callable[..., Path], gate: Gate
) -> None:
    repo = build(variants=("fp32",), preferred_batch_sizes=(2, 4), max_queue_delay_us=1000)
    policy, observer = Predicting(), Batches()
    async with serving(repo, policy=policy, observer=observer, **gate.options) as service:
        held = asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[1, 2]])))
        await gate.entered()
        pinned = [
            asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", [[3, 4, 5]]))) for _ in range(2)
        ]
        await observer.until_queued(2)  # both wait behind the held batch
        routed = asyncio.ensure_future(service.infer(tiny_request("tiny", [[6]])))
        await observer.until_queued(3)
        gate.open()
        responses = await asyncio.gather(held, *pinned, routed)
    assert [r.model_name for r in responses] == ["tiny.fp32"] * 4
    assert policy.predicted == [[2, 1]]  # 3 rows queued: cut at the preferred 2, the routed one alone
    assert observer.rows == [1, 2, 1]  # the held batch, then exactly the predicted ones


class Predictions(NullPolicyObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def prediction(self, model: str, variant: str, predicted_s: float, measured_s: float) -> None:
        self.seen.append((predicted_s, measured_s))


async def test_the_slo_policy_predicts_the_early_fire_the_batcher_makes(build: Callable[..., Path]) -> None:
    repo = build(variants=("fp32",), classifier=False, max_queue_delay_us=800_000, adaptive_delay=False)
    predictions = Predictions()
    ids = np.array([[1, 2, 3]], dtype=np.int64)
    async with serving(repo, policy=SloPolicy(observer=predictions)) as service:
        response = await service.infer(tiny_request("tiny", ids, parameters={"slo_ms": 200}))
        t0 = time.monotonic()
        await service.infer(tiny_request("tiny", ids))  # no SLO: it waits out max_queue_delay
        without = time.monotonic() - t0
    assert response.parameters["varigate_slo_met"] is True and without >= 0.75
    ((predicted_s, measured_s),) = predictions.seen
    assert 0.15 <= predicted_s < 0.2 and measured_s < 0.2  # fired at 180 ms, not after 800
    assert abs(predicted_s - measured_s) < 0.05, (predicted_s, measured_s)
