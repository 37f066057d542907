"""Merging requests into one batch and splitting it back (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.batching.padding import merge, signature, split
from gateway.core.config import ModelConfig, TensorConfig
from gateway.core.types import Datatype
from varigate.contract.keys import PARAM_LOGICAL_MODEL, PARAM_PAD_INPUTS

I64, F32 = Datatype.INT64, Datatype.FP32


def config(**parameters: str) -> ModelConfig:
    return ModelConfig(
        name="m",
        platform="onnxruntime_onnx",
        max_batch_size=8,
        inputs=(
            TensorConfig("ids", I64, (-1,)),
            TensorConfig("mask", I64, (-1,)),
            TensorConfig("x", F32, (2,)),
        ),
        outputs=(TensorConfig("pooled", F32, (3,)), TensorConfig("tokens", F32, (-1, 3))),
        parameters={PARAM_LOGICAL_MODEL: "m", **parameters},
    )


def feeds(rows: int, length: int) -> dict[str, np.ndarray]:
    ids = np.arange(1, rows * length + 1, dtype=np.int64).reshape(rows, length)
    return {"ids": ids, "mask": np.ones_like(ids), "x": np.full((rows, 2), length, dtype=np.float32)}


def test_pads_variable_inputs_and_cuts_outputs_back() -> None:
    cfg = config()
    batch, layout = merge(cfg, [feeds(1, 2), feeds(2, 4), feeds(1, 3)])
    assert batch["ids"].shape == (4, 4) and batch["x"].shape == (4, 2)
    assert batch["ids"][0].tolist() == [1, 2, 0, 0] and batch["mask"][3].tolist() == [1, 1, 1, 0]
    assert layout.rows == (1, 2, 1) and layout.padded == {0: 4}
    outputs = {
        "pooled": np.zeros((4, 3), np.float32),
        "tokens": np.arange(48, dtype=np.float32).reshape(4, 4, 3),
    }
    pieces = split(cfg, outputs, layout)
    assert [p["tokens"].shape for p in pieces] == [(1, 2, 3), (2, 4, 3), (1, 3, 3)]
    assert [p["pooled"].shape for p in pieces] == [(1, 3), (2, 3), (1, 3)]
    np.testing.assert_array_equal(pieces[2]["tokens"][0], outputs["tokens"][3, :3])


def test_signature_keeps_unpaddable_shapes_apart() -> None:
    assert signature(config(), feeds(1, 2)) == signature(config(), feeds(3, 5))
    off = config(**{PARAM_PAD_INPUTS: "none"})
    assert signature(off, feeds(1, 2)) != signature(off, feeds(1, 5))
    assert signature(off, feeds(1, 2)) == signature(off, feeds(4, 2))
    with pytest.raises(ValueError, match=r"input 'ids' has shapes .* and may not be padded"):
        merge(off, [feeds(1, 2), feeds(1, 5)])
    with pytest.raises(ValueError, match=r"names unknown inputs \['nope'\]"):
        _ = config(**{PARAM_PAD_INPUTS: "ids,nope"}).pad_inputs


def test_split_refuses_outputs_without_the_batch_rows() -> None:
    cfg = config()
    _, layout = merge(cfg, [feeds(1, 2), feeds(1, 2)])
    with pytest.raises(ValueError, match=r"output 'pooled' has shape \(3, 3\); expected 2 rows first"):
        split(cfg, {"pooled": np.zeros((3, 3), np.float32)}, layout)


def test_single_request_is_passed_through_without_copies() -> None:
    one = feeds(2, 3)
    batch, layout = merge(config(), [one])
    assert batch["ids"] is one["ids"] and layout.rows == (2,)
