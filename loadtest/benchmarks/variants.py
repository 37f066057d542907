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
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.benchmarks import common
from loadtest.benchmarks.variants_report import Point, card_table, table
from loadtest.cpu import Monitor
from varigate.contract.card import CARD_FILENAME, VariantCard, read_card
from varigate.contract.layout import model_file
from varigate.contract.variants import variant_rank

COMMAND = "python -m loadtest.benchmarks --only variants"
WINDOW_S = 0.4


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
