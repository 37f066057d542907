from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc

from compressor.repository import (
    RepositoryError,
    ServingSpec,
    TensorSpec,
    check_writable,
    config_text,
    is_up_to_date,
    model_config,
    parse_config_text,
    write_variant,
)
from varigate.contract.card import Accuracy, BatchProfile, Gate, VariantCard, card_from_dict, read_card

SPEC = ServingSpec(
    inputs=(TensorSpec("input_ids", "int64", (-1,)), TensorSpec("attention_mask", "int64", (-1,))),
    outputs=(TensorSpec("embedding", "float32", (4,)),),
    max_batch_size=32,
    preferred_batch_sizes=(8, 16),
    max_queue_delay_us=1500,
)


def _card(name: str, key: str) -> VariantCard:
    return VariantCard(
        logical_model="m",
        variant=name.split(".")[1],
        model_name=name,
        task="embedding",
        accuracy=Accuracy("mean_cosine", 0.99, 1.0, 0.01),
        gate=Gate(0.01, True, "ok"),
        profile=[BatchProfile(1, 1.0, 2.0, 1000.0, 10), BatchProfile(8, 4.0, 6.0, 2000.0, 10)],
        profile_conditions={"seq_len": 64},
        size_bytes=10,
        settings={},
        environment={},
        build_key=key,
    )


def _onnx(path: Path, value: float) -> Path:
    node = helper.make_node("Identity", ["x"], ["y"])
    c = helper.make_node(
        "Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.FLOAT, [1], [value])
    )
    add = helper.make_node("Add", ["y", "c"], ["z"])
    g = helper.make_graph(
        [node, c, add],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 4])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_config_round_trips_through_tritons_schema() -> None:
    cfg = model_config("m.int8", "m", "int8", SPEC)
    parsed = parse_config_text(config_text(cfg))
    assert parsed == cfg
    assert parsed.platform == "onnxruntime_onnx"
    assert parsed.max_batch_size == 32
    assert [i.name for i in parsed.input] == ["input_ids", "attention_mask"]
    assert parsed.input[0].data_type == mc.TYPE_INT64 and list(parsed.input[0].dims) == [-1]
    assert parsed.output[0].data_type == mc.TYPE_FP32 and list(parsed.output[0].dims) == [4]
    assert list(parsed.dynamic_batching.preferred_batch_size) == [8, 16]
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 1500
    assert not parsed.instance_group  # the gateway's layout decides (varigate/contract/execution.py)
    assert parsed.parameters["varigate.logical_model"].string_value == "m"
    assert parsed.parameters["varigate.variant"].string_value == "int8"


def test_an_instance_count_given_is_written() -> None:
    cfg = model_config("m.int8", "m", "int8", dataclasses.replace(SPEC, instance_count=2))
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 2)]


def test_unknown_dtype_is_named() -> None:
    bad = ServingSpec(inputs=(TensorSpec("x", "complex64", (1,)),), outputs=(), max_batch_size=1)
    with pytest.raises(RepositoryError, match="complex64"):
        model_config("m.fp32", "m", "fp32", bad)


def test_write_is_complete_and_idempotency_uses_build_key(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    cfg = model_config("m.fp32", "m", "fp32", SPEC)
    write_variant(repo, "m.fp32", _onnx(tmp_path / "a.onnx", 1.0), cfg, _card("m.fp32", "k1"))
    d = repo / "m.fp32"
    assert sorted(p.name for p in d.iterdir()) == ["1", "config.pbtxt", "varigate_card.json"]
    assert read_card(d).build_key == "k1"
    assert is_up_to_date(repo, "m.fp32", "k1")
    assert not is_up_to_date(repo, "m.fp32", "k2")
    assert not is_up_to_date(repo, "m.int8", "k1")
    # no staging left behind, and nothing but the model dir in the repository
    assert [p.name for p in repo.iterdir()] == ["m.fp32"]
    assert not any(p.name.endswith(".staging") for p in tmp_path.iterdir())


def test_readers_never_see_half_a_variant(tmp_path: Path) -> None:
    """While one thread rewrites the variant repeatedly, another always sees a whole, consistent one."""
    repo = tmp_path / "repo"
    cfg = model_config("m.fp32", "m", "fp32", SPEC)
    models = [_onnx(tmp_path / f"{v}.onnx", float(v)) for v in (1, 2)]
    write_variant(repo, "m.fp32", models[0], cfg, _card("m.fp32", "k0"))
    stop = threading.Event()
    seen: list[str] = []
    problems: list[str] = []

    def read(dir_fd: int, name: str) -> bytes:
        fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def reader() -> None:
        # A server pins one generation by opening the model directory once and reading relative to it.
        while not stop.is_set():
            try:
                dir_fd = os.open(repo / "m.fp32", os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                problems.append("model directory missing")
                continue
            try:
                card = card_from_dict(json.loads(read(dir_fd, "varigate_card.json")))
                model = read(dir_fd, "1/model.onnx")
                text = read(dir_fd, "config.pbtxt").decode()
            except FileNotFoundError:
                continue  # that generation was retired while we read it: retry, as a server would
            finally:
                os.close(dir_fd)
            value = onnx.numpy_helper.to_array(onnx.load_from_string(model).graph.node[1].attribute[0].t)[0]
            if card.build_key != f"k{int(value) - 1}" or "m.fp32" not in text:
                problems.append(f"card {card.build_key} with model value {value}")
            seen.append(card.build_key)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(40):
        write_variant(repo, "m.fp32", models[i % 2], cfg, _card("m.fp32", f"k{i % 2}"))
    stop.set()
    t.join()
    assert problems == []
    assert {"k0", "k1"} <= set(seen)


def test_unwritable_output_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RepositoryError, match="not a directory"):
        check_writable(f / "repo")
    # /proc refuses new files even to root, so this holds for any user
    with pytest.raises(RepositoryError, match="not writable"):
        check_writable(Path("/proc/self/varigate-repo"))
    assert not Path("/proc/self/varigate-repo").exists()


def test_card_latency_interpolates_between_profiled_batches() -> None:
    c = _card("m.fp32", "k")
    assert c.latency_ms(1) == 2.0
    assert c.latency_ms(8) == 6.0
    assert c.latency_ms(4) == pytest.approx(2.0 + 3 / 7 * 4.0)
    assert c.latency_ms(16) == pytest.approx(12.0)
    assert np.isfinite(c.latency_ms(3, "p50_ms"))
