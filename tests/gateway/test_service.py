"""The service's contract: validation messages, routing and pinning, metadata, config, statistics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from gateway.core.errors import InvalidInput, ModelNotFound, Unsupported
from gateway.core.selection.policy import Candidate, MostAccuratePolicy, PolicyContext
from gateway.core.telemetry.observer import Outcome, RequestEvent
from gateway.core.types import Datatype, InferRequest, RequestedOutput, Tensor
from varigate.contract.keys import VARIANT_PARAMETER

from .conftest import serving, tiny_request

IDS = np.array([[1, 2, 3]], dtype=np.int64)


def ids_tensor(
    name: str = "input_ids", data: np.ndarray = IDS, datatype: Datatype = Datatype.INT64
) -> Tensor:
    return Tensor(name, datatype, data.shape, data)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            [ids_tensor(), ids_tensor("attention_mask"), ids_tensor("token_type_ids")],
            r"unexpected inference input 'token_type_ids' for model 'tiny.fp32'; expected inputs: "
            r"\['attention_mask', 'input_ids'\]",
        ),
        (
            [ids_tensor()],
            r"expected 2 inputs but got 1 inputs for model 'tiny.fp32'; missing \['attention_mask'\]",
        ),
        (
            [ids_tensor(), ids_tensor("attention_mask", IDS.astype(np.int32), Datatype.INT32)],
            r"input 'attention_mask' of model 'tiny.fp32': expected datatype INT64, got INT32",
        ),
        (
            [
                ids_tensor(),
                ids_tensor(
                    "attention_mask", np.array([b"a", b"b", b"c"], dtype=object).reshape(1, 3), Datatype.BYTES
                ),
            ],
            r"input 'attention_mask' of model 'tiny.fp32': expected datatype INT64, got BYTES",
        ),
        (
            [ids_tensor(), ids_tensor("attention_mask", IDS.reshape(1, 1, 3))],
            r"input 'attention_mask' of model 'tiny.fp32': expected shape \[-1, -1\], got \[1, 1, 3\]",
        ),
        (
            [ids_tensor(), ids_tensor("attention_mask", np.ones((2, 3), dtype=np.int64))],
            r"input 'attention_mask' of model 'tiny.fp32' has batch size 2 but other inputs have 1",
        ),
        (
            [ids_tensor(), ids_tensor(), ids_tensor("attention_mask")],
            r"input 'input_ids' is given more than once",
        ),
    ],
)
async def test_invalid_inputs_name_the_problem(tiny_repo: Path, inputs: list[Tensor], message: str) -> None:
    async with serving(tiny_repo) as service:
        with pytest.raises(InvalidInput, match=message):
            await service.infer(InferRequest("tiny.fp32", inputs))
        assert service.statistics("tiny.fp32")[0].fail.count == 1


async def test_fixed_shape_and_output_checks(tiny_repo: Path) -> None:
    x = np.ones((2, 5), dtype=np.float32)
    async with serving(tiny_repo) as service:
        with pytest.raises(
            InvalidInput, match=r"input 'x' of model 'clf.fp32': expected shape \[-1, 4\], got \[2, 5\]"
        ):
            await service.infer(InferRequest("clf", [Tensor("x", Datatype.FP32, x.shape, x)]))
        good = InferRequest("clf", [Tensor("x", Datatype.FP32, (2, 4), np.ones((2, 4), np.float32))])
        with pytest.raises(InvalidInput, match=r"unexpected inference output 'scores' for model 'clf.fp32'"):
            await service.infer(InferRequest("clf", good.inputs, outputs=[RequestedOutput("scores")]))
        with pytest.raises(
            InvalidInput,
            match=r"parameter 'priority' for model 'clf.fp32' must be a non-negative integer, got 'high'",
        ):
            await service.infer(InferRequest("clf", good.inputs, parameters={"priority": "high"}))
        only = await service.infer(InferRequest("clf", good.inputs, outputs=[RequestedOutput("probs")]))
        assert [t.name for t in only.outputs] == ["probs"]
        np.testing.assert_allclose(only.outputs[0].data.sum(axis=1), [1.0, 1.0], rtol=1e-5)


async def test_unknown_model_and_version(tiny_repo: Path) -> None:
    async with serving(tiny_repo) as service:
        with pytest.raises(ModelNotFound, match=r"unknown model 'nope'"):
            await service.infer(tiny_request("nope", IDS))
        with pytest.raises(ModelNotFound, match=r"model 'tiny.fp32' has no version '7'"):
            await service.infer(tiny_request("tiny.fp32", IDS, model_version="7"))
        with pytest.raises(ModelNotFound, match=r"model 'tiny' has no version '7'"):
            await service.infer(tiny_request("tiny", IDS, model_version="7"))
        with pytest.raises(ModelNotFound, match=r"no version 'x'"):
            service.model_metadata("tiny.fp32", "x")
        assert not service.model_ready("nope")
        assert not service.model_ready("tiny", "7")


async def test_routing_policy_and_pinning(tiny_repo: Path) -> None:
    async with serving(tiny_repo) as service:
        routed = await service.infer(tiny_request("tiny", IDS, id="r1"))
        pinned = await service.infer(tiny_request("tiny.int8", IDS, model_version="1"))
    assert (routed.model_name, routed.parameters[VARIANT_PARAMETER], routed.id) == (
        "tiny.fp32",
        "tiny.fp32",
        "r1",
    )
    assert (pinned.model_name, pinned.model_version, pinned.parameters[VARIANT_PARAMETER]) == (
        "tiny.int8",
        "1",
        "tiny.int8",
    )
    assert [(t.name, t.datatype, t.shape) for t in routed.outputs] == [
        ("embedding", Datatype.FP32, (1, 8)),
        ("token_embeddings", Datatype.FP32, (1, 3, 8)),
    ]


async def test_metadata_config_index_and_readiness(tiny_repo: Path) -> None:
    async with serving(tiny_repo) as service:
        assert service.server_live() and service.server_ready()
        assert service.model_ready("tiny") and service.model_ready("tiny.int8", "1")
        meta = service.model_metadata("tiny.int8")
        assert (meta.name, meta.versions, meta.platform) == ("tiny.int8", ("1",), "onnxruntime_onnx")
        assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [
            ("input_ids", "INT64", (-1, -1)),
            ("attention_mask", "INT64", (-1, -1)),
        ]
        assert (
            meta.parameters["accuracy"] == pytest.approx(0.99) and meta.parameters["logical_model"] == "tiny"
        )
        logical = service.model_metadata("tiny")
        assert (
            logical.parameters["variants"] == ["tiny.fp32", "tiny.int8"] and logical.outputs == meta.outputs
        )
        config = service.model_config("tiny.int8")
        assert (
            config["max_batch_size"] == 8
            and config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
        )
        assert config["parameters"]["varigate.variant"] == {"string_value": "int8"}
        assert service.model_config("tiny")["name"] == "tiny"
        assert service.model_metadata("clf.fp32").parameters == {
            "logical_model": "clf",
            "variant": "fp32",
        }  # no card
        assert [(e.name, e.version, e.state) for e in service.repository_index()] == [
            ("clf.fp32", "1", "READY"),
            ("tiny.fp32", "1", "READY"),
            ("tiny.int8", "1", "READY"),
        ]
        assert {s.name for s in service.statistics()} == {"clf.fp32", "tiny.fp32", "tiny.int8"}
        assert {s.name for s in service.statistics("tiny")} == {"tiny.fp32", "tiny.int8"}
        with pytest.raises(Unsupported, match="not allowed in model control mode 'none'"):
            await service.load_model("tiny.fp32")
        assert service.server_metadata().name == "varigate"
    assert not service.server_live()


async def test_statistics_follow_triton(tiny_repo: Path) -> None:
    async with serving(tiny_repo) as service:
        for _ in range(3):
            await service.infer(tiny_request("tiny.int8", np.ones((2, 4), dtype=np.int64)))
        stats = service.statistics("tiny.int8", "1")[0]
    assert (stats.inference_count, stats.execution_count, stats.success.count) == (6, 3, 3)
    assert stats.queue.count == stats.compute_infer.count == 3
    assert stats.success.ns >= stats.queue.ns + stats.compute_infer.ns > 0
    assert [(b.batch_size, b.compute_infer.count) for b in stats.batch_stats] == [(2, 3)]
    assert stats.last_inference_ms > 1_600_000_000_000


class CountingPolicy(MostAccuratePolicy):
    """The default policy, counting what it is asked and told."""

    def __init__(self) -> None:
        self.asked = 0
        self.told: list[RequestEvent] = []

    def choose(
        self, logical_model: str, candidates: Sequence[Candidate], context: PolicyContext
    ) -> Candidate:
        self.asked += 1
        return super().choose(logical_model, candidates, context)

    def observe(self, event: RequestEvent) -> None:
        self.told.append(event)


async def test_an_invalid_request_never_reaches_the_policy(tiny_repo: Path) -> None:
    policy = CountingPolicy()
    async with serving(tiny_repo, policy=policy) as service:
        bad = [ids_tensor(), ids_tensor("attention_mask", IDS.reshape(1, 1, 3))]
        with pytest.raises(InvalidInput, match=r"input 'attention_mask' of model 'tiny.fp32'"):
            await service.infer(InferRequest("tiny", bad))
        with pytest.raises(InvalidInput, match=r"parameter 'deadline_ms' for model 'tiny'"):
            await service.infer(tiny_request("tiny", IDS, parameters={"deadline_ms": "soon"}))
        assert policy.asked == 0  # validated before the policy chose
        # the failures are still told (one event each: statistics, metrics and the policy all see them)
        assert [(e.outcome, e.reason) for e in policy.told] == [(Outcome.FAILURE, "invalid_input")] * 2
        assert service.statistics("tiny.fp32")[0].fail.count == 2
        ok = await service.infer(tiny_request("tiny", IDS, id="ok"))
        assert service.statistics("tiny.fp32")[0].success.count == 1
    assert ok.parameters[VARIANT_PARAMETER] == "tiny.fp32" and policy.asked == 1
    assert [e.outcome for e in policy.told] == [Outcome.FAILURE, Outcome.FAILURE, Outcome.SUCCESS]
