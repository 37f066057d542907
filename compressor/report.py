"""The end-of-run summary table and the accuracy-vs-latency plot."""

from __future__ import annotations

from pathlib import Path

from compressor.pipeline import VariantResult
from varigate.contract.card import VariantCard
from varigate.contract.variants import REFERENCE_VARIANT


def _p(card: VariantCard, bs: int, q: str) -> float | None:
    for p in card.profile:
        if p.batch_size == bs:
            return float(getattr(p, q))
    return None


def _tput(card: VariantCard, bs: int) -> float | None:
    for p in card.profile:
        if p.batch_size == bs:
            return p.throughput_per_s
    return None


def _accuracy(card: VariantCard) -> str:
    """The gated value, nearest-neighbour agreement, and each held-out set's value when there are several:
    ``mean_cosine=0.9902 nn=0.836 (docstrings 0.9929, english 0.9902)``."""
    a = card.accuracy
    text = f"{a.metric}={a.value:.4f}"
    if "nn_top1_agreement" in a.extra:
        text += f" nn={a.extra['nn_top1_agreement']:.3f}"
    prefix = f"{a.metric}_"
    per_set = [(k.removeprefix(prefix), v) for k, v in a.extra.items() if k.startswith(prefix)]
    if per_set:
        text += " (" + ", ".join(f"{name} {value:.4f}" for name, value in per_set) + ")"
    return text


def table(results: list[VariantResult]) -> str:
    fp32 = next((r.card for r in results if r.variant == REFERENCE_VARIANT and r.card), None)
    head = (
        "variant",
        "size MB",
        "accuracy",
        "p50/p99 b1 ms",
        "p50/p99 b8 ms",
        "speed-up b8",
        "gate",
        "status",
    )
    rows: list[tuple[str, ...]] = []
    for r in results:
        c = r.card
        if c is None:
            rows.append(
                (
                    r.model_name,
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "FAIL" if r.status == "failed" else "-",
                    f"{r.status}: {r.reason}",
                )
            )
            continue

        def lat(bs: int, c: VariantCard = c) -> str:
            a, b = _p(c, bs, "p50_ms"), _p(c, bs, "p99_ms")
            return f"{a:.2f}/{b:.2f}" if a is not None and b is not None else "-"

        mine, ref = _tput(c, 8), _tput(fp32, 8) if fp32 else None
        speed = f"{mine / ref:.2f}x" if mine and ref else "-"
        gate = (
            f"{'pass' if c.gate.passed else 'FAIL'} ({c.accuracy.relative_loss:+.2%} / "
            f"{c.gate.max_relative_loss:.0%})"
        )
        rows.append(
            (r.model_name, f"{c.size_bytes / 1e6:.1f}", _accuracy(c), lat(1), lat(8), speed, gate, r.status)
        )
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *(fmt(r) for r in rows)])


def plot(results: list[VariantResult], dst: Path, batch_size: int = 8) -> Path | None:
    """Accuracy (relative to fp32) against p50 latency at ``batch_size``, one point per variant."""
    cards = [r.card for r in results if r.card is not None]
    if not cards:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for c in cards:
        lat = c.latency_ms(batch_size, "p50_ms")
        acc = c.accuracy.value
        ax.scatter([lat], [acc], s=60)
        ax.annotate(c.variant, (lat, acc), textcoords="offset points", xytext=(6, 4), fontsize=9)
    c0 = cards[0]
    ax.set_xlabel(f"p50 latency at batch {batch_size} (ms, onnxruntime CPU)")
    ax.set_ylabel(
        f"{c0.accuracy.metric} ({'vs fp32' if c0.accuracy.metric == 'mean_cosine' else 'held-out'})"
    )
    ax.set_title(f"{c0.logical_model}: accuracy vs latency per variant")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst)
    plt.close(fig)
    return dst
