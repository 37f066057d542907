"""Structured cuts of MiniLM: speed-up against fidelity on both held-out sets, for each cut tried.

Each cut is built by the MiniLM source's own structured routine (the one the compressor runs: the same
texts, the same mix of docstrings and general English, the same distillation and early stopping), with
the cut given as settings, then exported and judged by the compressor's own ``Judge`` against fp32 on
every held-out set. Every cut gets the same step budget (``BUDGET``) and no early stop; the learning curve
gives the validation cosine at smaller budgets. Speed is measured afterwards, all cuts side
by side in interleaved rounds of windows at batch 8, sequence length 64 (onnxruntime CPU provider,
2 intra-op threads), as the variant table measures; disturbed windows are dropped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.benchmarks import common, frontier_report
from loadtest.benchmarks.variants import window

COMMAND = "python -m loadtest.benchmarks --only frontier"
BATCH, SEQ = 8, 64
# (label, structured settings): the cuts tried, fastest first, each for the same fixed budget (no early
# stop, so the learning curve shows what a smaller budget would have reached); fp32 is the reference.
BUDGET: dict[str, Any] = {"distil_steps": 1200, "eval_every": 200, "patience": 0, "target_cosine": None}
CUTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("2 layers (0, 5)", {"keep_layers": [0, 5]}),
    ("3 layers (0, 3, 5)", {"keep_layers": [0, 3, 5]}),
    (
        "6 layers, 6 heads, FFN 768",
        {"keep_layers": None, "keep_heads_per_layer": 6, "keep_ffn_per_layer": 768},
    ),
    (
        "6 layers, 9 heads, FFN 1152",
        {"keep_layers": None, "keep_heads_per_layer": 9, "keep_ffn_per_layer": 1152},
    ),
    (
        "6 layers, 10 heads, FFN 1280",
        {"keep_layers": None, "keep_heads_per_layer": 10, "keep_ffn_per_layer": 1280},
    ),
)


def build(work: Path, only: list[str] | None) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """fp32 and every cut built and judged; returns the ONNX files and one row per cut."""
    from compressor import recipes
    from compressor.config import BuildConfig
    from compressor.gate import Judge
    from compressor.passes import structured
    from compressor.passes.base import TorchModel
    from compressor.sources.minilm import build_minilm_source

    def log(line: str) -> None:
        print(f"   {line}", file=sys.stderr, flush=True)

    source = build_minilm_source()
    assert source.torch_module is not None and source.structured is not None
    judge = Judge(source, log)
    inputs = recipes.Inputs(source, None, work, BuildConfig(), log)
    reference = judge.reference(next(recipes.recipe(recipes.FP32).ladder(inputs)))
    files = {"fp32": reference.result.path}
    outputs = tuple(t.name for t in source.serving.outputs)
    model = TorchModel(source.torch_module, source.example_inputs, outputs, source.dynamic_axes)
    rows: list[dict[str, Any]] = []
    for label, settings in CUTS:
        if only and label not in only:
            continue
        log(f"cut {label}: {settings}")
        t0 = time.monotonic()
        step = structured.StructuredConfig(source.structured, {**settings, **BUDGET}, 0)
        made = structured.run(model, step, work / f"cut{len(rows)}.onnx")
        gated = judge.gate(label, 1.0, iter([made]))
        files[label] = made.path
        rows.append(
            {
                "label": label,
                "settings": settings,
                "seconds": round(time.monotonic() - t0, 1),
                "size_mb": round(made.path.stat().st_size / 1e6, 1),
                "attempt": gated.attempts[-1],
            }
        )
    return files, rows


def speed(files: dict[str, Path], rounds: int) -> dict[str, dict[str, Any]]:
    """Throughput of every file at batch 8, seq 64, side by side; ratios to fp32 paired per round. Only
    rounds with no disturbed window are used, unless fewer than 3 are: then all, flagged."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sessions = {
        k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in files.items()
    }
    ids = np.random.default_rng(0).integers(1000, 20000, size=(BATCH, SEQ), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    feeds = {"input_ids": ids, "attention_mask": np.ones((BATCH, SEQ), np.int64)}
    for s in sessions.values():
        for _ in range(2):
            s.run(None, feeds)
    rounds_seen: list[dict[str, tuple[float, bool]]] = []  # per round: key -> (rows/s, disturbed)
    order, shuffle = list(sessions), random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)
        this: dict[str, tuple[float, bool]] = {}
        for k in order:
            rate, _, win = window(sessions[k], feeds)
            this[k] = (rate, win.disturbed())
        rounds_seen.append(this)
    clean = [r for r in rounds_seen if not any(d for _, d in r.values())]
    used, flagged = (clean, False) if len(clean) >= 3 else (rounds_seen, True)
    return {
        k: {
            "rows_per_s": statistics.median(r[k][0] for r in used),
            "speedup": statistics.median(r[k][0] / r["fp32"][0] for r in used),
            "kept": len(used),
            "dropped": len(rounds_seen) - len(used),
            "disturbed": flagged,
        }
        for k in sessions
    }


def run(args: argparse.Namespace) -> str:
    only = getattr(args, "cuts", None)
    with tempfile.TemporaryDirectory(prefix="varigate-frontier-") as tmp:
        t0 = time.monotonic()
        files, rows = build(Path(tmp), only)
        built_s = time.monotonic() - t0
        speeds = speed(files, max(args.rounds, 5))
    measured = f"{datetime.datetime.now():%Y-%m-%d %H:%M}"
    for row in rows:
        row.update(speeds[row["label"]], run=measured, fp32_rows_per_s=speeds["fp32"]["rows_per_s"])
    raw = args.docs / "benchmarks" / "frontier.json"
    rows = _merged(raw, rows) if only else rows
    raw.write_text(json.dumps({"rows": rows}, indent=1, default=str))
    plot = frontier_report.plot(rows, args.docs / "plots" / "minilm_frontier.png")
    command = COMMAND + (" --cuts " + " ".join(f"'{c}'" for c in only) if only else "")
    head = (
        f"Command: `{command}`, {common.today()}; cuts built by the MiniLM source's structured routine "
        f"({built_s / 60:.0f} min for the cuts of this run), judged against fp32 on both held-out sets; "
        "speed at batch "
        f"{BATCH}, sequence length {SEQ}, {max(args.rounds, 5)} interleaved rounds of "
        "0.4 s windows, onnxruntime CPU provider with 2 intra-op threads."
    )
    return frontier_report.render(head, rows, plot)


def _merged(raw: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """With ``--cuts``: the cuts just run replace theirs in the last results, the others are kept (each
    row names the run it comes from, with that run's own fp32 for its ratio), in ``CUTS`` order."""
    try:
        kept = {r["label"]: r for r in json.loads(raw.read_text())["rows"]}
    except (OSError, ValueError, KeyError):
        kept = {}
    kept.update({r["label"]: r for r in rows})
    order = [label for label, _ in CUTS]
    return sorted(kept.values(), key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
