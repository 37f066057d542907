"""The digits CNN through the whole pipeline: every variant loads, meets its gate (or is recorded as
failed with a reason), carries a complete card, and re-running changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_digits

from compressor import cli
from compressor.recipes import recipe
from compressor.repository import parse_config_text
from varigate.contract.card import read_card
from varigate.contract.variants import VARIANTS

from .conftest import tree_digest


def test_every_variant_is_built_or_recorded_with_a_reason(digits_repo: Path) -> None:
    report = json.loads((digits_repo / "varigate_build.json").read_text())["digits"]
    assert set(report) == set(VARIANTS)
    for variant, entry in report.items():
        d = digits_repo / f"digits.{variant}"
        if entry["status"] == "failed":
            assert entry["reason"] and entry["attempts"], variant
            assert all(not a["passed"] for a in entry["attempts"])
            assert not d.exists()
            continue
        assert entry["status"] == "built", (variant, entry)
        card = read_card(d)
        assert card.variant == variant and card.logical_model == "digits" and card.task == "classification"
        assert card.gate.passed
        if variant != "fp32":
            assert card.accuracy.relative_loss <= (recipe(variant).max_loss or 0.0) + 1e-12
            assert card.gate.attempts and card.gate.attempts[-1]["passed"]
        assert card.size_bytes == (d / "1" / "model.onnx").stat().st_size
        assert [p.batch_size for p in card.profile] == [1, 8]
        assert all(p.p50_ms > 0 and p.p99_ms >= p.p50_ms and p.throughput_per_s > 0 for p in card.profile)
        assert card.environment["onnxruntime"] == ort.__version__ and "cpu_flags" in card.environment


def test_variants_load_and_classify_real_digits(digits_repo: Path) -> None:
    """Each variant, loaded fresh in onnxruntime as a server would, classifies real digit images."""
    x, y = load_digits(return_X_y=True)
    images = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    fp32_top1 = read_card(digits_repo / "digits.fp32").accuracy.value
    assert fp32_top1 > 0.95
    for d in sorted(digits_repo.glob("digits.*")):
        cfg = parse_config_text((d / "config.pbtxt").read_text())
        sess = ort.InferenceSession(str(d / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == [i.name for i in cfg.input]
        logits = sess.run(None, {"image": images[:200]})[0]
        assert logits.shape == (200, 10)
        # the whole dataset includes training images, so this is an upper-ish sanity bound, not the gate
        assert np.mean(logits.argmax(1) == y[:200]) > 0.9, d.name


def test_pruned_card_reports_sparsity_and_structured_is_smaller(digits_repo: Path) -> None:
    pruned = read_card(digits_repo / "digits.pruned")
    assert 0.05 < pruned.settings["sparsity_pruned_layers"] <= pruned.settings["amount"] + 1e-6
    assert any("not faster" in n for n in pruned.notes)
    fp32 = read_card(digits_repo / "digits.fp32")
    structured = read_card(digits_repo / "digits.pruned-structured")
    assert structured.size_bytes < 0.7 * fp32.size_bytes
    q = read_card(digits_repo / "digits.pruned-structured-int8")
    assert q.size_bytes < structured.size_bytes
    assert "QDQ" in q.settings["pass"] or "static" in q.settings["pass"]


def test_rerun_is_idempotent(digits_repo: Path) -> None:
    before = {d.name: tree_digest(d) for d in digits_repo.iterdir() if d.is_dir()}
    mtimes = {p: p.stat().st_mtime_ns for p in digits_repo.rglob("model.onnx")}
    assert cli.main(["digits", "--out", str(digits_repo), "--fast", "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in digits_repo.rglob("model.onnx")} == mtimes
    report = json.loads((digits_repo / "varigate_build.json").read_text())["digits"]
    assert {e["status"] for e in report.values()} <= {"up-to-date", "failed"}
    # only the report and the plot may be rewritten: every variant's folder is byte for byte the same
    assert "digits.fp32" in before and before["digits.fp32"] != ""
    assert {d.name: tree_digest(d) for d in digits_repo.iterdir() if d.is_dir()} == before
