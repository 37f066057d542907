"""Soak: N minutes (default 30) at 70% of measured capacity over HTTP (binary) and gRPC at once, sampling
the gateway every window: RSS, open fds, p50/p99 and errors of the requests scheduled in the window, and the
machine's steal and other processes' CPU (``loadtest.cpu.Monitor``) so disturbed windows can be dropped.

Target as ``loadtest.benchmarks.overload`` (the real minilm.int8 when the repository has it, else the slow
tiny fixture; the output says which). Writes the time series as JSON and a plot, prints a markdown section.

Targets, after the warm-up, on undisturbed windows: RSS growth < 5% (median RSS of the last third of the
windows against the first third), no fd growth (median of the last third <= median of the first third + 2),
p99 stable within 10% (median window p99 of the last third against the first third).

    python -m loadtest.benchmarks.soak --minutes 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.benchmarks import common, overload
from loadtest.cpu import Monitor, open_fds, rss_bytes
from loadtest.engine import Run
from loadtest.server import GatewayProcess

FRACTION = 0.7


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float  # end of the window, from the start of the load
    rss_mb: float
    fds: int
    steal: float
    other_cores: float
    disturbed: bool
    requests: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0


async def _sample(pid: int, window_s: float, until: asyncio.Future[Any], t0: float) -> list[Sample]:
    loop, samples = asyncio.get_running_loop(), []
    while not until.done():
        with Monitor((os.getpid(), pid)) as m:
            await asyncio.wait({until}, timeout=window_s)
        if until.done():
            break  # a partial last window: not counted
        w = m.window
        samples.append(
            Sample(
                loop.time() - t0,
                rss_bytes(pid) / 2**20,
                open_fds(pid),
                w.steal_fraction,
                w.other_cores,
                w.disturbed(),
            )
        )
    return samples


def _with_latency(samples: list[Sample], runs: list[Run], window_s: float) -> list[Sample]:
    sched = np.concatenate([r.scheduled_s for r in runs])
    lat = np.concatenate([r.latency_ms for r in runs])
    err = np.concatenate([r.error for r in runs])
    out = []
    for s in samples:
        inside = (sched >= s.t_s - window_s) & (sched < s.t_s)
        ok = inside & (err == "")
        p50, p99 = np.percentile(lat[ok], [50, 99]).tolist() if ok.any() else (None, None)
        out.append(
            Sample(
                **{
                    **asdict(s),
                    "requests": int(inside.sum()),
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "errors": int((inside & (err != "")).sum()),
                }
            )
        )
    return out


async def _soak(t: overload.Target, scratch: Path, minutes: float, window_s: float) -> dict[str, Any]:
    with GatewayProcess(t.repository, scratch / "gateway.log", t.args) as gw:
        cap = await overload.capacity(gw, t)
        rate = FRACTION * cap
        print(
            f"   capacity {cap:.1f}/s; soaking at {rate:.1f}/s for {minutes:g} min",
            file=sys.stderr,
            flush=True,
        )
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        load = asyncio.ensure_future(overload.open_loop(gw, t, rate, minutes * 60.0, seed=1))
        samples = await _sample(gw.pid, window_s, load, t0)
        runs = await load
        log_tail = gw.log()[-2000:]
    errors: dict[str, int] = {}
    for r in runs:
        for kind in r.error[r.error != ""].tolist():
            errors[kind] = errors.get(kind, 0) + 1
    return {
        "capacity_per_s": cap,
        "rate_per_s": rate,
        "samples": _with_latency(samples, runs, window_s),
        "errors": errors,
        "requests": sum(len(r.error) for r in runs),
        "gateway_log_tail": log_tail,
    }


def verdict(samples: list[Sample], warmup_s: float) -> dict[str, Any]:
    """The three targets on the undisturbed windows after the warm-up (first third against last third)."""
    after = [s for s in samples if s.t_s > warmup_s]
    kept = [s for s in after if not s.disturbed]
    flagged = len(kept) < 3  # as common.kept: every window disturbed -> judge them all, flagged
    if flagged:
        kept = after
    third = len(kept) // 3
    if third < 1:
        return {"windows": len(kept), "note": "too few undisturbed windows after the warm-up to judge"}
    first, last = kept[:third], kept[-third:]

    def med(xs: list[float | None]) -> float | None:
        vals = [x for x in xs if x is not None]
        return statistics.median(vals) if vals else None

    rss0, rss1 = med([s.rss_mb for s in first]), med([s.rss_mb for s in last])
    fd0, fd1 = med([float(s.fds) for s in first]), med([float(s.fds) for s in last])
    p0, p1 = med([s.p99_ms for s in first]), med([s.p99_ms for s in last])
    rss_growth = (rss1 / rss0 - 1) if rss0 and rss1 else None
    p99_change = (p1 / p0 - 1) if p0 and p1 else None
    return {
        "windows": len(kept),
        "dropped": len(samples) - len(kept),
        "all_disturbed": flagged,
        "rss_first_mb": rss0,
        "rss_last_mb": rss1,
        "rss_growth": rss_growth,
        "rss_ok": rss_growth is not None and rss_growth < 0.05,
        "fds_first": fd0,
        "fds_last": fd1,
        "fds_ok": fd0 is not None and fd1 is not None and fd1 <= fd0 + 2,
        "p99_first_ms": p0,
        "p99_last_ms": p1,
        "p99_change": p99_change,
        "p99_ok": p99_change is not None and abs(p99_change) <= 0.10,
    }


def plot(samples: list[Sample], warmup_s: float, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([s.t_s / 60 for s in samples])
    bad = np.array([s.disturbed for s in samples])
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    series = [
        ("gateway RSS (MB)", [s.rss_mb for s in samples]),
        ("open fds", [s.fds for s in samples]),
        ("latency (ms)", None),
        ("other CPU (cores) / steal", None),
    ]
    for ax, (label, ys) in zip(axes, series, strict=True):
        ax.set_ylabel(label)
        ax.axvline(warmup_s / 60, color="grey", linestyle=":", linewidth=1)
        if ys is not None:
            ax.plot(t, ys, marker=".", linewidth=1)
    axes[2].plot(t, [s.p50_ms if s.p50_ms is not None else np.nan for s in samples], label="p50", marker=".")
    axes[2].plot(t, [s.p99_ms if s.p99_ms is not None else np.nan for s in samples], label="p99", marker=".")
    axes[2].legend(loc="upper left")
    axes[3].plot(t, [s.other_cores for s in samples], label="other cores", marker=".")
    axes[3].plot(t, [s.steal for s in samples], label="steal fraction", marker=".")
    axes[3].legend(loc="upper left")
    for ax in axes:
        for x in t[bad]:
            ax.axvspan(x - 0.5 * (t[1] - t[0] if len(t) > 1 else 0.1), x, color="red", alpha=0.1)
    axes[-1].set_xlabel("minutes (dotted: end of warm-up; shaded: disturbed windows)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(t: overload.Target, result: dict[str, Any], v: dict[str, Any], args: argparse.Namespace) -> str:
    f = common.fmt
    ok = {True: "met", False: "**missed**"}
    command = f"python -m loadtest.benchmarks.soak --minutes {args.minutes:g}"
    lines = [
        "## Soak: 70% of capacity over HTTP and gRPC",
        "",
        (
            f"Command: `{command}`, {common.today()}. Target: {t.label}. Capacity "
            f"{result['capacity_per_s']:.1f}/s, "
            f"offered {result['rate_per_s']:.1f}/s (half per protocol, Poisson) for {args.minutes:g} min; "
            "windows of "
            f"{args.window_secs:g} s, the first {args.warmup_minutes:g} min are warm-up. "
            f"{result['requests']} requests, "
            f"errors: {result['errors'] or 'none'}."
        ),
        "",
    ]
    if "note" in v:
        return "\n".join([*lines, f"Not judged: {v['note']} ({v['windows']} windows).", ""])
    judged = (
        f"**every window was disturbed** (steal > 5% or other processes > 0.25 cores): judged on all "
        f"{v['windows']} windows after the warm-up, so read the p99 verdict with care"
        if v["all_disturbed"]
        else f"judged on {v['windows']} undisturbed windows after the warm-up ({v['dropped']} dropped: steal "
        "> 5%, "
        "other processes > 0.25 cores, or warm-up)"
    )
    lines += [
        f"Medians of the last third of the windows against the first third; {judged}.",
        "",
        common.md_table(
            ["target", "first third", "last third", "change", "verdict"],
            [
                [
                    "RSS growth < 5%",
                    f(v["rss_first_mb"], ".1f", " MB"),
                    f(v["rss_last_mb"], ".1f", " MB"),
                    f(100 * v["rss_growth"] if v["rss_growth"] is not None else None, "+.2f", "%"),
                    ok[v["rss_ok"]],
                ],
                ["no fd growth", f(v["fds_first"], ".0f"), f(v["fds_last"], ".0f"), "", ok[v["fds_ok"]]],
                [
                    "p99 within 10%",
                    f(v["p99_first_ms"], ".1f", " ms"),
                    f(v["p99_last_ms"], ".1f", " ms"),
                    f(100 * v["p99_change"] if v["p99_change"] is not None else None, "+.1f", "%"),
                    ok[v["p99_ok"]],
                ],
            ],
        ),
        "",
        f"![soak]({args.plot})",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--warmup-minutes", type=float, default=None, help="default: min(5, minutes / 6)")
    p.add_argument("--window-secs", type=float, default=5.0)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--json", type=Path, default=Path("docs/benchmarks/soak.json"))
    p.add_argument("--plot", type=Path, default=Path("docs/plots/soak.png"))
    args = p.parse_args(argv)
    if args.warmup_minutes is None:
        args.warmup_minutes = min(5.0, args.minutes / 6)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        t = overload.target(args.repository, Path(tmp))
        print(f"   {t.label}", file=sys.stderr, flush=True)
        result = asyncio.run(_soak(t, Path(tmp), args.minutes, args.window_secs))
    samples: list[Sample] = result["samples"]
    v = verdict(samples, args.warmup_minutes * 60)
    plot(samples, args.warmup_minutes * 60, args.plot, f"soak: {t.label}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        **result,
        "samples": [asdict(s) for s in samples],
        "target": t.label,
        "verdict": v,
        "minutes": args.minutes,
        "warmup_minutes": args.warmup_minutes,
        "window_secs": args.window_secs,
    }
    args.json.write_text(json.dumps(doc, indent=1, default=float))
    print(render(t, result, v, args))
    print(f"wrote {args.json}, {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
