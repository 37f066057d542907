"""The variant table's rendering: measured rows, the issue's targets, the fallback ladders walked."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from varigate.contract.card import BatchProfile, VariantCard
from varigate.contract.layout import BUILD_REPORT_FILENAME, model_name
from varigate.contract.variants import REFERENCE_VARIANT

TARGETS = {  # the targets for MiniLM at sequence length 64, batch 8
    ("minilm", "int8"): (1.4, 0.99),
    ("minilm", "pruned-structured"): (1.8, 0.97),
    ("minilm", "pruned-structured-int8"): (2.5, None),
}


NN_AIM = 0.85  # issue 11: nearest-neighbour agreement the structured variants aim for


@dataclass
class Point:
    throughput: list[float] = field(default_factory=list)  # rows/s per kept window
    p50_ms: list[float] = field(default_factory=list)
    dropped: int = 0


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
    acc = _accuracy(card)
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


def _accuracy(card: VariantCard) -> str:
    """The card's score; for an embedder gated on several sets, each set's cosine / NN agreement."""
    extra = card.accuracy.extra
    sets = [k.removeprefix("mean_cosine_") for k in extra if k.startswith("mean_cosine_")]
    if not sets:
        nn = extra.get("nn_top1_agreement")
        return f"{card.accuracy.metric} {card.accuracy.value:.4f}" + (
            f", NN agreement {nn:.3f}" if nn is not None else ""
        )
    return "; ".join(
        f"{s} {extra[f'mean_cosine_{s}']:.4f} / NN {extra.get(f'nn_top1_agreement_{s}', float('nan')):.3f}"
        for s in sets
    )


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
        gated_on = cards[v][0].gate.attempts[-1].get("gated_on") if cards[v][0].gate.attempts else None
        if gated_on:
            cos_txt += f" on the worse held-out set ({gated_on})"
        nn = [x for k, x in cards[v][0].accuracy.extra.items() if k.startswith("nn_top1_agreement_")]
        if v == "pruned-structured" and nn:
            cos_txt += f", NN agreement {min(nn):.3f} on the worse set (aim >= {NN_AIM})"
            verdict += "" if min(nn) >= NN_AIM else " (NN aim missed)"
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
            for k in (
                "kept_layers",
                "heads_per_layer",
                "ffn_per_layer",
                "distil_steps",
                "stopped",
                "sparsity_pruned_layers",
            )
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
