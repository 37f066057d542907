"""What every request reads of a model is derived once, when the config or record is made: a tensor's
variable axes, the config's logical model, variant, adaptive delay and pad inputs, a record's READY
versions, the registry's variants per logical model. A replaced config or record, or a load and unload,
must show at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gateway.core.config import ModelConfig, TensorConfig
from gateway.core.errors import ModelNotFound, ModelNotReady
from gateway.core.types import Datatype
from varigate.contract.keys import PARAM_ADAPTIVE_DELAY, PARAM_LOGICAL_MODEL, PARAM_PAD_INPUTS, PARAM_VARIANT

from .conftest import serving, tiny_request

I64 = Datatype.INT64


def config(**parameters: str) -> ModelConfig:
    inputs = (TensorConfig("ids", I64, (-1, 4, -1)), TensorConfig("x", Datatype.FP32, (2,)))
    return ModelConfig("m.a", "onnxruntime_onnx", 8, inputs, (), parameters=parameters)


def test_derived_fields_follow_the_fields_they_come_from() -> None:
    ids = TensorConfig("ids", I64, (-1, 4, -1))
    assert ids.variable_axes == (0, 2)
    assert dataclasses.replace(ids, dims=(3, -1)).variable_axes == (1,)
    assert ids == TensorConfig("ids", I64, (-1, 4, -1)) and "variable_axes" not in repr(ids)
    plain = config()
    assert (plain.logical_model, plain.variant, plain.adaptive_delay) == ("m.a", "m.a", True)
    assert plain.pad_inputs == frozenset({"ids"})
    named = dataclasses.replace(
        plain,
        parameters={
            PARAM_LOGICAL_MODEL: "m",
            PARAM_VARIANT: "a",
            PARAM_ADAPTIVE_DELAY: " No ",
            PARAM_PAD_INPUTS: "x",
        },
    )
    assert (named.logical_model, named.variant, named.adaptive_delay) == ("m", "a", False)
    assert named.pad_inputs == frozenset({"x"})
    assert config(**{PARAM_PAD_INPUTS: "none"}).pad_inputs == frozenset()
    assert named == dataclasses.replace(plain, parameters=dict(named.parameters))


def test_a_wrong_pad_inputs_parameter_is_refused_on_every_read_not_when_made() -> None:
    wrong = config(**{PARAM_PAD_INPUTS: "ids,nope"})  # made: the repository reports it when it is read
    for _ in range(2):
        with pytest.raises(ValueError, match=r"names unknown inputs \['nope'\]"):
            _ = wrong.pad_inputs


async def test_loads_and_unloads_show_in_routing_at_once(build: Callable[..., Path]) -> None:
    repo = build(classifier=False)
    ids = np.array([[1, 2, 3]], dtype=np.int64)
    async with serving(repo, control_mode="explicit") as service:
        with pytest.raises(ModelNotReady):
            await service.infer(tiny_request("tiny", ids))
        await service.load_model("tiny.int8")
        assert (await service.infer(tiny_request("tiny", ids))).model_name == "tiny.int8"
        await service.load_model("tiny.fp32")
        served = {(await service.infer(tiny_request("tiny", ids))).model_name for _ in range(3)}
        assert served == {"tiny.fp32"}  # the most accurate of the two, now that both are ready
        await service.unload_model("tiny.fp32")
        assert (await service.infer(tiny_request("tiny", ids))).model_name == "tiny.int8"
        assert not service.model_ready("tiny.fp32") and service.model_ready("tiny")
        await service.unload_model("tiny.int8")
        with pytest.raises(ModelNotReady):
            await service.infer(tiny_request("tiny", ids))
        with pytest.raises(ModelNotFound):
            await service.infer(tiny_request("nothing", ids))
