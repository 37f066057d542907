"""The structured-cut frontier as markdown and as a plot (speed-up against the worse held-out set)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.benchmarks.common import fmt, md_table

TARGET_SPEEDUP, TARGET_COSINE, TARGET_NN = 1.8, 0.97, 0.85
SETS = ("docstrings", "english")


def _sets(attempt: dict[str, Any]) -> list[str]:
    found = [k.removeprefix("mean_cosine_") for k in attempt if k.startswith("mean_cosine_")]
    return [s for s in SETS if s in found] + sorted(s for s in found if s not in SETS)


def _worse(attempt: dict[str, Any]) -> float | None:
    values = [attempt[f"mean_cosine_{s}"] for s in _sets(attempt)]
    return min(values) if values else attempt.get("mean_cosine")


def _curve(settings: dict[str, Any]) -> str:
    """Validation cosine (worse set) at a few budgets along the learning curve."""
    curve = settings.get("learning_curve") or {}
    steps, validation = curve.get("step", []), curve.get("validation", {})
    if not steps or not validation:
        return "-"
    worst = [min(v[i] for v in validation.values()) for i in range(len(steps))]
    picks = sorted({len(steps) - 1, *(i for i, s in enumerate(steps) if s in (500, 1000, 2000, 3000))})
    return ", ".join(f"{steps[i]}: {worst[i]:.4f}" for i in picks)


def row(r: dict[str, Any]) -> list[str]:
    a = r["attempt"]
    s = a.get("settings", {})
    per_set = [
        f"{a[f'mean_cosine_{n}']:.4f} / {a.get(f'nn_top1_agreement_{n}', float('nan')):.3f}" for n in _sets(a)
    ]
    shape = f"{len(s.get('kept_layers', []))} x ({s.get('heads_per_layer')}, {s.get('ffn_per_layer')})"
    return [
        r["label"],
        shape,
        f"{s.get('distil_steps', '-')} ({s.get('stopped', '-')})",
        fmt(r.get("speedup"), ".2f", "x"),
        *per_set,
        fmt(_worse(a), ".4f"),
        _curve(s),
        f"{r.get('kept', 0)}/{r.get('dropped', 0)}"
        + (" (all disturbed: flagged)" if r.get("disturbed") else ""),
        f"{r.get('run', '-')}, fp32 {fmt(r.get('fp32_rows_per_s'), '.0f')} rows/s",
    ]


def render(head: str, rows: Sequence[dict[str, Any]], plot: Path | None) -> str:
    sets = _sets(rows[0]["attempt"]) if rows else list(SETS)
    table = md_table(
        [
            "cut",
            "layers x (heads, FFN) per layer",
            "steps run (stopped by)",
            "x fp32 b8",
            *[f"{n}: cosine / NN agreement" for n in sets],
            "worse-set cosine",
            "validation cosine at step",
            "rounds kept/dropped",
            "run (its fp32 at b8)",
        ],
        [row(r) for r in rows],
    )
    verdicts = []
    for r in rows:
        a, sp = r["attempt"], r.get("speedup")
        worse = _worse(a)
        nn = min((a.get(f"nn_top1_agreement_{n}", 0.0) for n in sets), default=0.0)
        meets = sp is not None and worse is not None and sp >= TARGET_SPEEDUP and worse >= TARGET_COSINE
        verdicts.append(
            f"- {r['label']}: {fmt(sp, '.2f', 'x')} at worse-set cosine {fmt(worse, '.4f')}, NN agreement "
            f"(worse set) {nn:.3f}: speed+cosine target {'met' if meets else 'missed'}, NN target "
            f"{'met' if nn >= TARGET_NN else 'missed'}"
        )
    out = [
        "## Structured cuts of MiniLM: speed-up against fidelity on both held-out sets",
        "",
        head,
        "",
        table,
        "",
        "Each ratio is to fp32 measured side by side in the same run (the last column); a run with "
        "`--cuts` re-measures those cuts and keeps the other rows from their own runs.",
        "",
        f"Against the targets (>= {TARGET_SPEEDUP}x at cosine >= {TARGET_COSINE} on both sets; NN "
        f"agreement >= {TARGET_NN}):",
        *verdicts,
    ]
    if plot is not None:
        out += ["", f"![frontier]({plot.parent.name}/{plot.name})"]
    return "\n".join(out) + "\n"


def plot(rows: Sequence[dict[str, Any]], dst: Path) -> Path | None:
    points: list[tuple[str, float, float]] = []
    for r in rows:
        x, y = r.get("speedup"), _worse(r["attempt"])
        if x is not None and y is not None:
            points.append((str(r["label"]), float(x), float(y)))
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for label, x, y in points:
        ax.scatter([x], [y], s=50)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(TARGET_SPEEDUP, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(TARGET_COSINE, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("throughput vs fp32 at batch 8, seq 64 (onnxruntime CPU, side by side)")
    ax.set_ylabel("mean cosine to fp32, worse held-out set")
    ax.set_title("MiniLM structured cuts: the speed/fidelity frontier")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst)
    plt.close(fig)
    return dst
