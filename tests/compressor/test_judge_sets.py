"""The gate over several held-out sets: scored on every set, gated on the worse, both reported.

Real ONNX models run by onnxruntime: the tiny embedder (a mean of an embedding table) as the reference,
and candidates whose table rows are changed only for the token ids one set uses, so which set is worse
is known by construction."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compressor import cli, pipeline, report
from compressor.config import BuildConfig
from compressor.gate import GateFailed, Judge
from compressor.passes.base import PassResult
from compressor.source import Source
from compressor.sources.custom import from_onnx
from tests.fixtures.tinyrepo import VOCAB_SIZE, classifier_model, embedder_model
from varigate.contract.card import read_card

HALF = VOCAB_SIZE // 2  # the "docstrings" set uses ids 1..HALF-1, the "english" set HALF..VOCAB_SIZE-1


def _feeds(rng: np.random.Generator, lo: int, hi: int, batches: int = 3) -> list[dict[str, np.ndarray]]:
    out = []
    for _ in range(batches):
        ids = rng.integers(lo, hi, size=(8, 5)).astype(np.int64)
        out.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return out


def _candidate(path: Path, rows: slice, noise: float) -> Path:
    """The tiny fp32 embedder with noise added to the table ``rows`` only."""
    model = embedder_model("fp32")
    init = next(i for i in model.graph.initializer if i.name == "table")
    table = numpy_helper.to_array(init).copy()
    table[rows] += noise * np.random.default_rng(7).normal(size=table[rows].shape).astype(np.float32)
    init.CopyFrom(numpy_helper.from_array(table, "table"))
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    tmp = tmp_path_factory.mktemp("sets")
    onnx.save(embedder_model("fp32"), tmp / "tiny.onnx")
    ids = np.random.default_rng(0).integers(1, VOCAB_SIZE, size=(16, 5)).astype(np.int64)
    np.savez(tmp / "inputs.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    rng = np.random.default_rng(1)
    return dataclasses.replace(
        from_onnx("tiny", tmp / "tiny.onnx", tmp / "inputs.npz"),
        eval_set="docstrings",
        eval_batches=_feeds(rng, 1, HALF),
        extra_eval={"english": _feeds(rng, HALF, VOCAB_SIZE)},
    )


def _judge(source: Source) -> Judge:
    judge = Judge(source, lambda line: None)
    assert source.onnx_path is not None
    judge.reference(PassResult(source.onnx_path, {"pass": "reference"}))
    return judge


@pytest.mark.parametrize(
    ("rows", "worse", "better"),
    [(slice(HALF, None), "english", "docstrings"), (slice(1, HALF), "docstrings", "english")],
)
def test_the_gate_is_on_the_worse_set(
    source: Source, tmp_path: Path, rows: slice, worse: str, better: str
) -> None:
    judge = _judge(source)
    cand = PassResult(_candidate(tmp_path / "cand.onnx", rows, 0.5), {"pass": "noisy"})
    gated = judge.gate("int8", 0.5, iter([cand]))
    attempt = gated.attempts[0]
    assert attempt["gated_on"] == worse
    extra = gated.score.extra
    assert extra[f"mean_cosine_{better}"] == pytest.approx(1.0, abs=1e-6)  # its tokens are untouched
    assert extra[f"mean_cosine_{worse}"] < 0.99
    assert gated.score.value == extra[f"mean_cosine_{worse}"] == attempt["mean_cosine"]
    assert attempt["relative_loss"] == pytest.approx(1.0 - extra[f"mean_cosine_{worse}"], abs=1e-6)
    for name in ("docstrings", "english"):
        assert 0.0 <= extra[f"nn_top1_agreement_{name}"] <= 1.0
        assert extra[f"p05_cosine_{name}"] <= extra[f"mean_cosine_{name}"] + 1e-9
    assert extra["p05_cosine"] == extra[f"p05_cosine_{worse}"]  # the unsuffixed figures are the gated set's


def test_a_candidate_good_on_the_primary_set_fails_on_the_other(source: Source, tmp_path: Path) -> None:
    judge = _judge(source)
    cand = PassResult(_candidate(tmp_path / "cand.onnx", slice(HALF, None), 0.5), {"pass": "noisy"})
    loss = judge.gate("int8", 1.0, iter([cand])).attempts[0]["relative_loss"]
    with pytest.raises(GateFailed) as failed:
        judge.gate("int8", loss * 0.9, iter([cand]))  # the primary set's loss (0) alone would pass
    assert [a["passed"] for a in failed.value.attempts] == [False]
    assert failed.value.attempts[0]["gated_on"] == "english"


def test_one_set_keeps_the_old_figures(source: Source, tmp_path: Path) -> None:
    single = dataclasses.replace(source, extra_eval={})
    judge = _judge(single)
    cand = PassResult(_candidate(tmp_path / "cand.onnx", slice(1, HALF), 0.5), {"pass": "noisy"})
    gated = judge.gate("int8", 1.0, iter([cand]))
    assert gated.attempts[0]["gated_on"] == "docstrings"
    assert set(gated.score.extra) == {"min_cosine", "p01_cosine", "p05_cosine", "nn_top1_agreement"}
    assert gated.score.value < 0.99


def test_a_classifier_is_judged_on_its_labelled_set_only(tmp_path: Path) -> None:
    onnx.save(classifier_model(), tmp_path / "clf.onnx")
    x = np.random.default_rng(3).normal(size=(16, 4)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", x=x)
    np.save(tmp_path / "labels.npy", np.zeros(16, dtype=np.int64))
    clf = from_onnx("clf", tmp_path / "clf.onnx", tmp_path / "inputs.npz", tmp_path / "labels.npy")
    clf = dataclasses.replace(clf, extra_eval={"other": [{"x": x[:3]}]})  # unlabelled: not scored
    judge = _judge(clf)
    assert list(judge.sets()) == ["heldout"]
    assert clf.onnx_path is not None
    gated = judge.gate("int8", 0.0, iter([PassResult(clf.onnx_path, {"pass": "same"})]))
    assert gated.score.metric == "top1" and gated.score.extra == {}
    assert gated.score.value == judge.reference_value


def test_the_card_and_the_table_report_both_sets(source: Source, tmp_path: Path) -> None:
    config = BuildConfig.model_validate({**json.loads(json.dumps(cli.FAST)), "variants": ["int8"]})
    results = pipeline.build(source, tmp_path / "repo", config, lambda line: None)
    assert [r.status for r in results] == ["built", "built"]
    card = read_card(tmp_path / "repo" / "tiny.int8")
    extra = card.accuracy.extra
    assert {"mean_cosine_docstrings", "mean_cosine_english"} <= set(extra)
    gated_on = card.gate.attempts[-1]["gated_on"]
    assert card.accuracy.value == extra[f"mean_cosine_{gated_on}"]
    assert card.accuracy.value == min(extra["mean_cosine_docstrings"], extra["mean_cosine_english"])
    assert all(isinstance(v, float) for v in extra.values())
    row = next(line for line in report.table(results).splitlines() if line.startswith("tiny.int8"))
    assert f"docstrings {extra['mean_cosine_docstrings']:.4f}" in row
    assert f"english {extra['mean_cosine_english']:.4f}" in row
