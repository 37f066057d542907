"""Variant table: every variant of every logical model in a repository, measured side by side.

Sessions for all variants are open at once; in each round the variants are timed in a shuffled order,
window by window, so drift on the shared machine hits them alike. Ratios against fp32 are paired per
round, then the median is quoted. Inputs are synthetic but shaped as the profile says (token ids at the
card's sequence length for transformers): dense kernels' speed does not depend on values.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.benchmarks import common
from loadtest.cpu import Monitor
from varigate.contract.card import CARD_FILENAME, BatchProfile, VariantCard, read_card
from varigate.contract.layout import BUILD_REPORT_FILENAME, model_file, model_name
from varigate.contract.variants import REFERENCE_VARIANT, variant_rank

COMMAND = "python -m loadtest.benchmarks --only variants"
WINDOW_S = 0.4
TARGETS = {  # the targets for MiniLM at sequence length 64, batch 8
    ("minilm", "int8"): (1.4, 0.99),
    ("minilm", "pruned-structured"): (1.8, 0.97),
    ("minilm", "pruned-structured-int8"): (2.5, None),
}


@dataclass
class Point:
    throughput: list[float] = field(default_factory=list)  # rows/s per kept window
    p50_ms: list[float] = field(default_factory=list)
    dropped: int = 0


def feeds_for(session: Any, card: VariantCard, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    seq = int(card.profile_conditions.get("seq_len", 64))
    feeds: dict[str, np.ndarray] = {}
    for i in session.get_inputs():
        dims = [
            batch if j == 0 else (d if isinstance(d, int) and d > 0 else seq) for j, d in enumerate(i.shape)
        ]
        if i.type == "tensor(int64)":
            if i.name == "attention_mask":
                feeds[i.name] = np.ones(dims, np.int64)
            else:
                a = rng.integers(1000, 20000, size=dims, dtype=np.int64)
                a[:, 0], a[:, -1] = 101, 102
                feeds[i.name] = a
        else:
            feeds[i.name] = rng.random(dims, dtype=np.float32)
    return feeds


def window(sess: Any, feeds: dict[str, np.ndarray]) -> tuple[float, list[float], Any]:
    times: list[float] = []
    with Monitor() as mon:
        t_end = time.monotonic() + WINDOW_S
        while len(times) < 3 or time.monotonic() < t_end:
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t0)
    rows = len(next(iter(feeds.values())))
    return rows * len(times) / sum(times), times, mon.window


def measure(
    cards: dict[str, tuple[VariantCard, Path]], batches: list[int], rounds: int
) -> dict[tuple[str, int], Point]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sessions = {
        v: ort.InferenceSession(str(model_file(p)), opts, providers=["CPUExecutionProvider"])
        for v, (_, p) in cards.items()
    }
    rng = np.random.default_rng(0)
    feeds = {(v, b): feeds_for(sessions[v], cards[v][0], b, rng) for v in sessions for b in batches}
    for (v, _), f in feeds.items():  # warm up
        for _ in range(2):
            sessions[v].run(None, f)
    points = {(v, b): Point() for v in sessions for b in batches}
    order = list(sessions)
    shuffle = random.Random(0)
    for _ in range(rounds):
        for b in batches:
            shuffle.shuffle(order)
            for v in order:
                tput, times, win = window(sessions[v], feeds[(v, b)])
                pt = points[(v, b)]
                if win.disturbed():
                    pt.dropped += 1
                    continue
                pt.throughput.append(tput)
                pt.p50_ms.append(1000 * statistics.median(times))
    return points


def _med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _ratio(points: dict[tuple[str, int], Point], v: str, b: int) -> float | None:
    mine, ref = (
        _med(points[(v, b)].throughput),
        _med(points[(REFERENCE_VARIANT, b)].throughput) if (REFERENCE_VARIANT, b) in points else None,
    )
    return mine / ref if mine and ref else None


def table(
    logical: str,
    cards: dict[str, tuple[VariantCard, Path]],
    points: dict[tuple[str, int], Point],
    batches: list[int],
) -> str:
    out = _measured_table(cards, points, batches)
    checks = _targets(logical, cards, points)
    if checks:
        out += "\n\nTargets (sequence length 64, batch 8):\n" + "\n".join(checks)
    ladders = [
        line for v, (card, _) in cards.items() if len(card.gate.attempts) > 1 for line in _ladder(card)
    ]
    if ladders:
        out += (
            "\n\nFallback ladders walked at build time (from the cards; the last rung tried is the one "
            "shipped):\n"
        )
        out += "\n".join(ladders)
    return out


def _measured_table(
    cards: dict[str, tuple[VariantCard, Path]], points: dict[tuple[str, int], Point], batches: list[int]
) -> str:
    b_mid = 8 if 8 in batches else batches[len(batches) // 2]
    head = [
        "variant",
        "size MB",
        "accuracy vs fp32 / held-out",
        "gate",
        *[f"p50 b{b} ms" for b in batches],
        f"rows/s b{b_mid}",
        *[f"x fp32 b{b}" for b in batches],
        "windows kept/dropped",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v, (card, _) in cards.items():
        lines.append("| " + " | ".join(_row(v, card, points, batches, b_mid)) + " |")
    return "\n".join(lines)


def _row(
    v: str, card: VariantCard, points: dict[tuple[str, int], Point], batches: list[int], b_mid: int
) -> list[str]:
    acc = f"{card.accuracy.metric} {card.accuracy.value:.4f}"
    if "nn_top1_agreement" in card.accuracy.extra:
        acc += f", NN agreement {card.accuracy.extra['nn_top1_agreement']:.3f}"
    gate = (
        "reference"
        if v == REFERENCE_VARIANT
        else f"{card.accuracy.relative_loss:+.2%} (limit {card.gate.max_relative_loss:.0%})"
    )
    lat = [f"{x:.2f}" if (x := _med(points[(v, b)].p50_ms)) else "-" for b in batches]
    ratios = [f"{r:.2f}x" if (r := _ratio(points, v, b)) else "-" for b in batches]
    kept = sum(len(points[(v, b)].throughput) for b in batches)
    dropped = sum(points[(v, b)].dropped for b in batches)
    tput = _med(points[(v, b_mid)].throughput)
    return [
        card.model_name,
        f"{card.size_bytes / 1e6:.1f}",
        acc,
        gate,
        *lat,
        f"{tput:.0f}" if tput else "-",
        *ratios,
        f"{kept}/{dropped}",
    ]


def _targets(
    logical: str, cards: dict[str, tuple[VariantCard, Path]], points: dict[tuple[str, int], Point]
) -> list[str]:
    """The issue's targets for ``logical``, one line each: met, missed, not built or not measured."""
    checks = []
    for (lm, v), (min_ratio, min_cos) in TARGETS.items():
        if lm != logical:
            continue
        if v not in cards:
            checks.append(
                f"- {model_name(lm, v)}: **not built** (failed its gate; see {BUILD_REPORT_FILENAME})"
            )
            continue
        r = _ratio(points, v, 8)
        cos = cards[v][0].accuracy.value
        ok_r = r is not None and r >= min_ratio
        ok_c = min_cos is None or cos >= min_cos
        verdict = "met" if ok_r and ok_c else "**missed**"
        cos_txt = f", cosine {cos:.4f} (target >= {min_cos})" if min_cos else f", cosine {cos:.4f}"
        checks.append(
            f"- {lm}.{v}: {r:.2f}x fp32 throughput at batch 8 (target >= {min_ratio}x){cos_txt}: {verdict}"
            if r
            else f"- {lm}.{v}: no measurement"
        )
    return checks


def _ladder(card: VariantCard) -> list[str]:
    lines = []
    for i, a in enumerate(card.gate.attempts):
        shape = a.get("settings", {})
        detail = ", ".join(
            f"{k} {shape[k]:.3g}" if isinstance(shape[k], float) else f"{k} {shape[k]}"
            for k in ("heads_per_layer", "ffn_per_layer", "distil_steps", "sparsity_pruned_layers")
            if k in shape
        )
        value = a.get(card.accuracy.metric)
        lines.append(
            f"- {card.model_name} rung {i}: {card.accuracy.metric} "
            f"{'-' if value is None else f'{value:.4f}'} ({'pass' if a.get('passed') else 'fail'})"
            + (f"; {detail}" if detail else "")
        )
    return lines


def card_table(cards: dict[str, tuple[VariantCard, Path]]) -> str:
    """The compressor's own profiles (taken one variant after another during the build, so noisier than
    the side-by-side windows); shown when the side-by-side run kept no window."""
    ref = cards.get(REFERENCE_VARIANT)
    ref_tput = {p.batch_size: p.throughput_per_s for p in ref[0].profile} if ref else {}
    lines = [
        "| variant | p50/p99 b1 ms | p50/p99 b8 ms | rows/s b8 | x fp32 b8 (card) "
        "| CPU steal during profile |",
        "|---|---|---|---|---|---|",
    ]
    for card, _ in cards.values():
        pts = {p.batch_size: p for p in card.profile}

        def lat(b: int, pts: dict[int, BatchProfile] = pts) -> str:
            return f"{pts[b].p50_ms:.2f}/{pts[b].p99_ms:.2f}" if b in pts else "-"

        t8 = pts[8].throughput_per_s if 8 in pts else None
        ratio = f"{t8 / ref_tput[8]:.2f}x" if t8 and ref_tput.get(8) else "-"
        steal = card.profile_conditions.get("cpu_steal_fraction")
        lines.append(
            f"| {card.model_name} | {lat(1)} | {lat(8)} | {t8:.0f} | {ratio} | "
            f"{'-' if steal is None else f'{steal:.1%}'} |"
            if t8
            else f"| {card.model_name} | {lat(1)} | {lat(8)} | - | - | - |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    repo: Path = args.repository
    groups: dict[str, dict[str, tuple[VariantCard, Path]]] = {}
    for d in sorted(p for p in repo.iterdir() if (p / CARD_FILENAME).is_file()):
        card = read_card(d)
        groups.setdefault(card.logical_model, {})[card.variant] = (card, d)
    if not groups:
        raise SystemExit(
            f"no variants with cards under {repo}; build them first: varigate compress default --out {repo}"
        )
    parts = [
        "## Variants: accuracy and onnxruntime throughput, side by side\n",
        f"Command: `{COMMAND}` (after `varigate compress default --out {repo}`), "
        f"{common.today()}, {args.rounds} interleaved rounds of {WINDOW_S}s windows per "
        "point, "
        "onnxruntime CPU provider with 2 intra-op threads. Accuracy columns come from the variant cards "
        "(embedder: mean cosine to fp32 on the held-out text set; classifier: top-1 on the held-out split).",
    ]
    for logical, cards in groups.items():
        cards = {v: cards[v] for v in sorted(cards, key=variant_rank)}
        maxb = max(p.batch_size for c, _ in cards.values() for p in c.profile)
        batches = sorted({1, 8, maxb})
        seq = next(iter(cards.values()))[0].profile_conditions.get("seq_len")
        print(f"   {logical}: {len(cards)} variants, batches {batches}", flush=True)
        points = measure(cards, batches, args.rounds)
        parts.append(f"\n### {logical}" + (f" (sequence length {seq})" if seq else "") + "\n")
        parts.append(table(logical, cards, points, batches))
        if not any(pt.throughput for pt in points.values()):
            parts.append(
                "\n**No undisturbed window in this run** (other processes used more than a quarter of a core "
                "throughout), so no side-by-side ratio is quoted. For reference, the build-time profiles "
                "from the variant cards (one variant after another, on a busy machine; not comparable "
                "side by side):\n"
            )
            parts.append(card_table(cards))
    return "\n".join(parts) + "\n"
