"""PNG plots (matplotlib, Agg backend: no display needed).

- ``timeline``: three panels sharing the time axis: latency of every request (dots; errors marked at
  the top) with p50/p99 per time bin and the SLO; offered load (arrivals/s) against throughput and
  errors per second; the variant mix per time bin.
- ``cdf``: latency CDFs of one or more runs on a log axis, p50/p99 marked.
- ``attainment_vs_load``: SLO attainment (median, min-max bars) against offered load, one line per policy.
- ``mix_over_time``: one run's offered load against its answers per second stacked by serving variant (and
  its misses), over the variant mix per time bin: how a policy moves through a burst.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.engine import Run


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _legend(ax: Any, **options: Any) -> bool:
    """A legend when something is labelled (matplotlib warns on an empty one)."""
    if not ax.get_legend_handles_labels()[0]:
        return False
    ax.legend(fontsize=8, **options)
    return True


def _plain() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:g}")


def _bins(run: Run, bin_s: float | None) -> np.ndarray:
    end = float(np.nanmax(np.concatenate([run.scheduled_s, run.done_s]))) if len(run.scheduled_s) else 1.0
    if bin_s is None:
        bin_s = max(0.1, end / 60)
    return np.arange(0.0, end + bin_s, bin_s)


def timeline(run: Run, path: Path, *, title: str = "", bin_s: float | None = None) -> Path:
    plt = _pyplot()
    edges = _bins(run, bin_s)
    width = float(edges[1] - edges[0])
    mids = edges[:-1] + width / 2
    fig, (ax_lat, ax_load, ax_mix) = plt.subplots(
        3, 1, figsize=(10, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1.3]}
    )
    _latency_panel(ax_lat, run, edges, mids)
    ax_lat.set_title(title or run.description)
    _load_panel(ax_load, run, edges, mids, width)
    _mix_panel(ax_mix, run, edges, mids)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency_panel(ax: Any, run: Run, edges: np.ndarray, mids: np.ndarray) -> None:
    """Every request's latency (errors marked at the top), p50/p99 per time bin and the SLO."""
    ok = run.ok
    lat = run.latency_ms
    ax.scatter(run.scheduled_s[ok], lat[ok], s=3, alpha=0.35, color="tab:blue", lw=0, label="request")
    idx = np.digitize(run.scheduled_s[ok], edges) - 1
    p50 = [np.percentile(lat[ok][idx == i], 50) if np.any(idx == i) else np.nan for i in range(len(mids))]
    p99 = [np.percentile(lat[ok][idx == i], 99) if np.any(idx == i) else np.nan for i in range(len(mids))]
    ax.plot(mids, p50, color="tab:green", lw=1.5, label="p50 per bin")
    ax.plot(mids, p99, color="tab:red", lw=1.5, label="p99 per bin")
    slo = run.slo_ms[~np.isnan(run.slo_ms)]
    if len(slo):
        ax.axhline(float(np.median(slo)), color="black", ls="--", lw=1, label=f"SLO {np.median(slo):g} ms")
    if (~ok).any():
        top = float(np.nanmax(lat[ok])) * 1.2 if ok.any() else 1.0
        ax.scatter(
            run.scheduled_s[~ok],
            np.full((~ok).sum(), top),
            marker="x",
            s=12,
            color="black",
            label=f"error ({(~ok).sum()})",
        )
    if ok.any() and np.nanmin(lat[ok]) > 0:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_plain())
        ax.yaxis.set_minor_formatter(_plain())
    ax.set_ylabel("latency (ms)")
    _legend(ax, loc="upper left", ncol=3)


def _load_panel(ax: Any, run: Run, edges: np.ndarray, mids: np.ndarray, width: float) -> None:
    """Offered load (arrivals/s) against throughput and errors per second."""
    ok = run.ok
    offered = np.histogram(run.scheduled_s, edges)[0] / width
    served = np.histogram(run.done_s[ok], edges)[0] / width
    failed = np.histogram(run.done_s[~ok & ~np.isnan(run.done_s)], edges)[0] / width
    ax.step(mids, offered, where="mid", color="tab:gray", label="offered (arrivals/s)")
    ax.plot(mids, served, color="tab:blue", label="throughput (responses/s)")
    if failed.any():
        ax.plot(mids, failed, color="tab:red", label="errors/s")
    ax.set_ylabel("requests/s")
    _legend(ax, loc="upper left", ncol=3)


def _mix_panel(ax: Any, run: Run, edges: np.ndarray, mids: np.ndarray) -> None:
    """The fraction of each variant among the answers per time bin."""
    ok = run.ok
    variants = sorted({str(v) for v in run.variant[ok]}) or ["(none)"]
    counts = np.array([np.histogram(run.done_s[ok & (run.variant == v)], edges)[0] for v in variants], float)
    totals = counts.sum(axis=0)
    frac = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    ax.stackplot(mids, frac, labels=variants, step="mid", alpha=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("variant mix")
    ax.set_xlabel("time since start (s)")
    _legend(ax, loc="upper left", ncol=max(1, len(variants)))


def cdf(
    latencies_ms: Mapping[str, np.ndarray],
    path: Path,
    *,
    title: str = "Latency CDF",
    slo_ms: float | None = None,
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, values in latencies_ms.items():
        v = np.sort(np.asarray(values, float))
        if not len(v):
            continue
        y = np.arange(1, len(v) + 1) / len(v)
        p50, p99 = np.percentile(v, [50, 99])
        (line,) = ax.plot(v, y, lw=1.5, label=f"{label}: p50 {p50:.1f}, p99 {p99:.1f} ms")
        ax.plot([p50, p99], [0.5, 0.99], "o", color=line.get_color(), ms=4)
    if slo_ms is not None:
        ax.axvline(slo_ms, color="black", ls="--", lw=1, label=f"SLO {slo_ms:g} ms")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_plain())
    ax.xaxis.set_minor_formatter(_plain())
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    if not _legend(ax, loc="lower right"):
        ax.text(0.5, 0.5, "no successful requests", ha="center", transform=ax.transAxes)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def attainment_vs_load(
    series: Mapping[str, Sequence[tuple[float, float, float, float]]],
    path: Path,
    *,
    target: float | None = None,
    title: str = "SLO attainment against load",
    xlabel: str = "offered load (x C)",
) -> Path:
    """``series``: per policy, (load, median, low, high) points, attainment as a fraction."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for n, (label, points) in enumerate(series.items()):
        pts = sorted(p for p in points if not np.isnan(p[1]))
        if not pts:
            continue
        arr = np.array(pts, float)
        x, (mid, lo, hi) = arr[:, 0], arr[:, 1:].T * 100
        bars = np.vstack([mid - lo, hi - mid])
        marker = "o" if n == 0 else "sD^v<>ph"[n % 8]
        first = n == 0  # the policy under test: drawn thicker, on top
        ax.errorbar(
            x,
            mid,
            yerr=bars,
            marker=marker,
            ms=5,
            capsize=3,
            lw=2.2 if first else 1.2,
            label=label,
            zorder=3 if first else 2,
        )
    if target is not None:
        ax.axhline(target * 100, color="black", ls="--", lw=1, label=f"target {target:.1%}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("SLO attainment (%)")
    ax.set_ylim(-2, 102)
    ax.grid(True, alpha=0.3)
    if not _legend(ax, loc="lower left"):
        ax.text(0.5, 0.5, "no runs", ha="center", transform=ax.transAxes)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mix_over_time(run: Run, path: Path, *, title: str = "", bin_s: float | None = None) -> Path:
    """Offered arrivals/s against answers/s stacked by variant and misses/s; the mix per bin below."""
    plt = _pyplot()
    edges = _bins(run, bin_s)
    width = float(edges[1] - edges[0])
    mids = edges[:-1] + width / 2
    fig, (ax_rate, ax_mix) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1.2]}
    )
    ok = run.ok
    in_slo = ok & ~(run.latency_ms > np.where(np.isnan(run.slo_ms), np.inf, run.slo_ms))
    variants = sorted({str(v) for v in run.variant[ok]})
    per_variant = [np.histogram(run.done_s[ok & (run.variant == v)], edges)[0] / width for v in variants]
    if variants:
        ax_rate.stackplot(
            mids, per_variant, labels=[f"answered by {v}" for v in variants], step="mid", alpha=0.75
        )
    ax_rate.step(
        mids, np.histogram(run.scheduled_s, edges)[0] / width, where="mid", color="black", label="offered"
    )
    missed = np.histogram(run.scheduled_s[~in_slo], edges)[0] / width
    if missed.any():
        ax_rate.step(mids, missed, where="mid", color="tab:red", lw=1.5, label="missed the SLO (by arrival)")
    ax_rate.set_ylabel("requests/s")
    ax_rate.set_title(title or run.description)
    _legend(ax_rate, loc="upper right")
    _mix_panel(ax_mix, run, edges, mids)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
