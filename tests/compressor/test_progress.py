"""Progress of the compressor's long steps: the line format and its throttle (an injected clock), the bar,
a real digits build read back through ``parse()``, and the learning curves it records and draws."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from compressor import cli, curves, evaluate, progress
from compressor.passes.structured_cnn import StructuredCnnConfig, make_structured, prune_and_distil
from compressor.pipeline import VariantResult
from varigate.contract.card import read_card

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines_task(name: str, total: int, clock: Clock, out: io.StringIO, secs: float = 5.0) -> progress.Task:
    return progress.Task(
        name, total, display="lines", secs=secs, line_prefix="[build] ", stream=out, clock=clock
    )


def parsed(text: str) -> list[dict[str, str]]:
    return [p for p in map(progress.parse, text.splitlines()) if p is not None]


def test_lines_come_at_start_then_at_most_every_interval_then_at_exit() -> None:
    clock, out = Clock(), io.StringIO()
    with lines_task("distil x", 1000, clock, out) as t:
        for _ in range(1000):  # 12 s of steps: 12 ms each
            clock.now += 0.012
            t.update(loss=0.5)
    got = parsed(out.getvalue())
    assert len(out.getvalue().splitlines()) == len(got) == 4  # start, ~5 s, ~10 s, final
    assert [g["state"] for g in got] == ["running", "running", "running", "done"]
    assert [int(g["done"]) for g in got] == [0, 417, 834, 1000]
    assert [g["elapsed_s"] for g in got] == ["0.0", "5.0", "10.0", "12.0"]
    assert got[1]["rate"] == "83.3" and got[1]["eta_s"] == "7.0" and got[1]["pct"] == "41.7"
    assert got[0]["eta_s"] == "nan" and "loss" not in got[0] and got[-1]["loss"] == "0.5"
    assert all(line.startswith("[build] progress ") for line in out.getvalue().splitlines())


def test_no_line_is_written_while_the_clock_stands_still() -> None:
    clock, out = Clock(), io.StringIO()
    t = lines_task("t", 10**6, clock, out).__enter__()
    for _ in range(10_000):
        t.update(loss=1.0)
        t.set(val=0.9)
    assert len(out.getvalue().splitlines()) == 1
    clock.now += 5.0
    t.update()
    assert [int(p["done"]) for p in parsed(out.getvalue())] == [0, 10_001]


def test_an_exception_ends_the_task_with_state_stopped() -> None:
    clock, out = Clock(), io.StringIO()
    with pytest.raises(RuntimeError), lines_task("calibrate y", 5, clock, out) as t:
        t.update(2)
        raise RuntimeError("boom")
    last = parsed(out.getvalue())[-1]
    assert (last["state"], last["done"], last["total"]) == ("stopped", "2", "5")


def test_parse_reads_back_quoted_names_fields_and_a_prefix() -> None:
    clock, out = Clock(), io.StringIO()
    name = 'evaluate "held out" set\\2 a=b'
    with lines_task(name, 3, clock, out) as t:
        clock.now += 1.5
        t.update(3, loss=0.000123456, step=7, note="two words", empty="", big=12345678.0)
    final = parsed(out.getvalue())[-1]
    assert final == {
        "task": name,
        "done": "3",
        "total": "3",
        "unit": "step",
        "pct": "100.0",
        "elapsed_s": "1.5",
        "eta_s": "0.0",
        "rate": "2.0",
        "state": "done",
        "loss": "0.0001235",
        "step": "7",
        "note": "two words",
        "empty": "",
        "big": "1.235e+07",
    }
    assert progress.parse("[build]   int8: top1=0.98 loss=0.00% pass") is None
    assert progress.parse('progress task="x" done=1') is None  # fixed keys missing
    assert progress.parse('progress task="x done=1 total=2') is None  # unterminated quote


def test_fields_cannot_shadow_the_fixed_keys_or_break_the_format() -> None:
    t = progress.Task("t", 1, display="off")
    with pytest.raises(ValueError, match="fixed"):
        t.update(pct=3.0)
    with pytest.raises(ValueError, match="identifier"):
        t.set(**{"a b": 1})


def test_a_bar_shows_prefix_name_and_fields_and_off_shows_nothing() -> None:
    out = io.StringIO()
    with progress.Task("distil y", 4, display="bar", line_prefix="[build] ", stream=out) as t:
        for _ in range(4):
            t.update(loss=0.25)
    text = out.getvalue()
    assert "[build] distil y" in text and "4/4" in text and "loss=0.25" in text
    assert progress.parse(text) is None
    quiet = io.StringIO()
    with progress.Task("x", 4, display="off", stream=quiet) as t:
        t.update(4, loss=1.0)
    assert quiet.getvalue() == "" and t.done == 4


def test_environment_chooses_the_display_and_a_bad_value_fails_before_any_compute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VARIGATE_PROGRESS", raising=False)
    assert progress.mode(io.StringIO()) == "lines"  # not a terminal
    for value in ("bar", "lines", "off"):
        monkeypatch.setenv("VARIGATE_PROGRESS", value)
        assert progress.mode(io.StringIO()) == value
    monkeypatch.setenv("VARIGATE_PROGRESS", "fancy")
    assert cli.main(["digits", "--out", str(tmp_path / "repo")]) == 1
    assert "VARIGATE_PROGRESS='fancy'" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()
    monkeypatch.setenv("VARIGATE_PROGRESS", "lines")
    monkeypatch.setenv("VARIGATE_PROGRESS_SECS", "-1")
    with pytest.raises(ValueError, match="VARIGATE_PROGRESS_SECS"):
        progress.task("t", 1)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A real ``varigate compress digits`` with stderr a pipe (not a terminal) and lines every 50 ms."""
    tmp = tmp_path_factory.mktemp("progress")
    env = {
        **os.environ,
        "VARIGATE_PROGRESS_SECS": "0.05",
        "VARIGATE_LOG_PREFIX": "[build] ",
        "VARIGATE_CACHE_DIR": str(tmp / "cache"),  # nothing cached: every pass runs
    }
    env.pop("VARIGATE_PROGRESS", None)
    repo = tmp / "model_repository"
    proc = subprocess.run(
        [sys.executable, "-m", "compressor", "digits", "--out", str(repo), "--fast"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return repo, proc


def test_a_real_build_reports_profiling_calibration_and_distillation(
    built: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    repo, proc = built
    assert all(line.startswith("[build] ") for line in proc.stderr.splitlines())
    assert all(line.startswith("[build] ") for line in proc.stdout.splitlines())
    tasks: dict[str, list[dict[str, str]]] = {}
    for p in parsed(proc.stderr):
        tasks.setdefault(p["task"], []).append(p)
    for variant in ("fp32", "fp16", "int8.static0", "structured0"):
        assert f"profile {variant}" in tasks, sorted(tasks)
    calibrations = [name for name in tasks if name.startswith("calibrate ")]
    assert len(calibrations) == 2, sorted(tasks)  # int8 and pruned-structured-int8, one rung each
    calibration_batches = read_card(repo / "digits.int8").settings["calibration_batches"]
    for name, seen in tasks.items():
        total = int(seen[0]["total"])
        done = [int(s["done"]) for s in seen]
        assert done == sorted(done) and done[0] == 0, name
        assert [s["state"] for s in seen] == ["running"] * (len(seen) - 1) + ["done"], name
        assert done[-1] == total and seen[-1]["pct"] == "100.0", name
        assert {s["total"] for s in seen} == {str(total)}, name
        if name.startswith("profile "):
            assert total == 2 and seen[-1]["bs"] == "8" and float(seen[-1]["p50_ms"]) > 0
        if name.startswith("calibrate "):
            assert total == calibration_batches
    distil = tasks["distil cnn (attempt 0)"]
    assert len(distil) > 2 and 0 < float(distil[-1]["loss"]) and 0.9 < float(distil[-1]["train"]) <= 1.0


def test_the_structured_card_carries_its_learning_curve_and_the_png_is_drawn(
    built: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    repo, proc = built
    card = read_card(repo / "digits.pruned-structured")
    curve = card.settings["learning_curve"]
    steps, epochs = curve["step"], card.settings["epochs"]
    assert len(steps) == epochs and steps == sorted(steps) and steps[-1] == epochs * steps[0]
    assert len(curve["loss"]) == epochs and curve["loss"][-1] < curve["loss"][0]
    assert list(curve["validation"]) == ["train"] and len(curve["validation"]["train"]) == epochs
    assert curve["attempt"] == 0
    assert card.gate.attempts[-1]["settings"]["learning_curve"] == curve
    png = repo / "digits_learning_curves.png"
    assert f"learning curves: {png}" in proc.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 500 and height > 200  # one row: the structured variant only has a curve
    built_report = json.loads((repo / "varigate_build.json").read_text())["digits"]
    assert built_report["pruned-structured"]["status"] == "built"


def test_evaluation_shows_a_task_only_over_more_than_eight_batches(
    built: tuple[Path, subprocess.CompletedProcess[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VARIGATE_PROGRESS", "lines")
    model = built[0] / "digits.fp32" / "1" / "model.onnx"
    images = np.random.default_rng(0).random((9 * 4, 1, 8, 8), dtype=np.float32)
    batches = [{"image": images[i : i + 4]} for i in range(0, len(images), 4)]
    few = evaluate.run_batches(model, batches[:8], what="heldout")
    assert parsed(capsys.readouterr().err) == []
    many = evaluate.run_batches(model, batches, what="heldout")
    seen = parsed(capsys.readouterr().err)
    assert {s["task"] for s in seen} == {"heldout model"}
    assert (seen[-1]["done"], seen[-1]["total"], seen[-1]["unit"]) == ("9", "9", "batch")
    assert many.shape == (36, 10) and np.array_equal(many[:32], few)


def _tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 16),
        nn.ReLU(),
        nn.Linear(16, 4),
    ).eval()


def test_cnn_distillation_scores_named_validation_sets_without_changing_the_student() -> None:
    teacher, rng = _tiny_cnn(), np.random.default_rng(1)
    images, heldout = rng.random((40, 1, 8, 8), dtype=np.float32), rng.random((12, 1, 8, 8), dtype=np.float32)
    config = StructuredCnnConfig(epochs=3, batch_size=16, channel_multiple=4, min_channels=2)
    plain, _ = prune_and_distil(teacher, images, config)
    student, info = make_structured(images, config.model_dump(), {"heldout": heldout})(teacher, {}, 0)
    curve = info["learning_curve"]
    assert curve["step"] == [3, 6, 9] and len(curve["loss"]) == 3 and curve["attempt"] == 0
    assert list(curve["validation"]) == ["heldout"] and len(curve["validation"]["heldout"]) == 3
    assert all(-1.0 <= v <= 1.0 for v in curve["validation"]["heldout"])
    for a, b in zip(plain.state_dict().values(), student.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # scoring the curve leaves training exactly as it was


def test_curves_plot_failed_attempts_and_skip_variants_without_curves(tmp_path: Path) -> None:
    def attempt(n: int, scale: float) -> dict[str, object]:
        curve = {"step": [10, 20, 30], "loss": [scale, scale / 2, 0.0], "validation": {"english": [0.8, 0.9]}}
        return {"settings": {"attempt": n, "learning_curve": {**curve, "attempt": n}}, "passed": False}

    failed = VariantResult(
        "pruned-structured", "m.pruned-structured", "failed", attempts=[attempt(0, 1), attempt(1, 2)]
    )
    plain = VariantResult(
        "int8", "m.int8", "failed", attempts=[{"settings": {"pass": "int8"}, "passed": False}]
    )
    found = curves.runs(failed)
    assert [(r.attempt, r.label) for r in found] == [(0, "attempt 0 (failed)"), (1, "attempt 1 (failed)")]
    assert found[1].loss == [2.0, 1.0, 0.0] and found[1].validation == {"english": [0.8, 0.9]}
    assert curves.runs(plain) == []
    assert curves.plot([plain], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    png = curves.plot([plain, failed], tmp_path / "m_learning_curves.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_sh_parses_and_lets_the_build_prefix_its_own_lines() -> None:
    script = ROOT / "scripts" / "run.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert 'VARIGATE_LOG_PREFIX="[build] "' in text and "| sed" not in text
