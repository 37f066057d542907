"""Bad input: one clear line on stderr, a non-zero exit, and the repository exactly as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compressor import cli

from .conftest import tree_digest


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    (r / "keep.fp32" / "1").mkdir(parents=True)
    (r / "keep.fp32" / "config.pbtxt").write_text('name: "keep.fp32"\n')
    return r


def test_unknown_model_is_a_usage_error(repo: Path) -> None:
    before = tree_digest(repo)
    proc = subprocess.run(
        [sys.executable, "-m", "compressor", "bert-huge", "--out", str(repo)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "invalid choice: 'bert-huge'" in proc.stderr
    assert tree_digest(repo) == before


def test_bad_import_path(repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    before = tree_digest(repo)
    np.savez(tmp_path / "x.npz", x=np.zeros((4, 3), np.float32))
    code, err = _run(
        [
            "module",
            "--name",
            "m",
            "--module",
            "no_such_pkg.models:Net",
            "--inputs",
            str(tmp_path / "x.npz"),
            "--out",
            str(repo),
        ],
        capsys,
    )
    assert code == 1
    assert (
        err.count("\n") == 0
        and "no_such_pkg.models:Net" in err
        and err.startswith("varigate compress: error:")
    )
    code, err = _run(
        [
            "module",
            "--name",
            "m",
            "--module",
            "collections:NoSuchThing",
            "--inputs",
            str(tmp_path / "x.npz"),
            "--out",
            str(repo),
        ],
        capsys,
    )
    assert code == 1 and "has no attribute 'NoSuchThing'" in err
    assert tree_digest(repo) == before


def test_onnx_that_fails_to_load(repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    before = tree_digest(repo)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    np.savez(tmp_path / "x.npz", x=np.zeros((4, 3), np.float32))
    code, err = _run(
        ["onnx", "--name", "m", "--onnx", str(bad), "--inputs", str(tmp_path / "x.npz"), "--out", str(repo)],
        capsys,
    )
    assert code == 1 and "broken.onnx" in err and "failed to load" in err and err.count("\n") == 0
    assert tree_digest(repo) == before


def test_empty_calibration_data(repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from onnx import TensorProto, helper, save

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3])],
    )
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "ok.onnx"))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 3), np.float32))
    before = tree_digest(repo)
    code, err = _run(
        [
            "onnx",
            "--name",
            "m",
            "--onnx",
            str(tmp_path / "ok.onnx"),
            "--inputs",
            str(tmp_path / "empty.npz"),
            "--out",
            str(repo),
        ],
        capsys,
    )
    assert code == 1 and "empty.npz" in err and "non-zero batch" in err
    assert tree_digest(repo) == before


def test_static_int8_refuses_empty_calibration(tmp_path: Path) -> None:
    from compressor.passes import int8_static

    src = tmp_path / "ok.onnx"
    from onnx import TensorProto, helper, save

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3])],
    )
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    with pytest.raises(ValueError, match="calibration data is empty"):
        int8_static.run(
            src, int8_static.CalibratedConfig(int8_static.Int8StaticConfig(), []), tmp_path / "q.onnx"
        )
    assert not (tmp_path / "q.onnx").exists()


def test_unwritable_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "a-file"
    f.write_text("x")
    code, err = _run(["digits", "--out", str(f / "repo")], capsys)
    assert code == 1 and "not a directory" in err and str(f) in err
    assert f.read_text() == "x"


def test_bad_config_names_the_field(capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"gate": {"max_relative_loss": {"int9": 0.01}}}')
    before = tree_digest(repo)
    code, err = _run(["digits", "--out", str(repo), "--config", str(cfg)], capsys)
    assert code == 1 and "int9" in err
    assert tree_digest(repo) == before
