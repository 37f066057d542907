"""The issue's targets for the ``peers`` section, each verdict computed from the run's medians."""

from __future__ import annotations

from collections.abc import Callable

from loadtest.benchmarks.common import fmt
from loadtest.benchmarks.peers_data import View

THROUGHPUT_TARGETS = {"grpc": 0.95, "http-binary": 0.92}  # x raw onnxruntime's best batch
ADDED_P50_TARGET_MS = 0.5  # over raw batch 1, gRPC, concurrency 1


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**missed**")


def targets(v: View, variants: list[str]) -> str:
    lines = ["\n### Targets (varigate at its defaults, from this run)\n"]
    for variant in variants:
        best, b = v.raw_best(variant)
        for proto, target in THROUGHPUT_TARGETS.items():
            top = v.best("varigate", variant, proto)
            r = top / best if top and best else None
            lines.append(
                f"- {variant}, {proto}: best throughput {fmt(r, '.3f', 'x')} raw's best (batch {b}); "
                f"target >= {target}x: {_verdict(None if r is None else r >= target)}"
            )
        for proto in ("grpc", "http-binary"):
            for c in (16, 32):
                ours, theirs = v.tput("varigate", variant, proto, c), v.tput("triton", variant, proto, c)
                p99, tp99 = (
                    v.lat("varigate", variant, proto, c, "p99"),
                    v.lat("triton", variant, proto, c, "p99"),
                )
                ok = None if None in (ours, theirs, p99, tp99) else (ours >= theirs and p99 < tp99)  # type: ignore[operator]
                lines.append(
                    f"- {variant}, {proto}, c={c}: {fmt(ours)} seq/s, p99 {fmt(p99)} ms against "
                    f"Triton's {fmt(theirs)} seq/s, p99 {fmt(tp99)} ms; target at least Triton's "
                    f"throughput with a lower p99: {_verdict(ok)}"
                )
        p50, raw1 = v.lat("varigate", variant, "grpc", 1, "p50"), v.raw_p50_b1(variant)
        tri = v.lat("triton", variant, "grpc", 1, "p50")
        added = p50 - raw1 if p50 is not None and raw1 is not None else None
        ok = (
            None
            if added is None or tri is None or p50 is None
            else added <= ADDED_P50_TARGET_MS and p50 < tri
        )
        lines.append(
            f"- {variant}, gRPC, c=1: p50 {fmt(p50, '.2f')} ms, {fmt(added, '+.2f')} ms over raw batch 1 "
            f"({fmt(raw1, '.2f')} ms), Triton {fmt(tri, '.2f')} ms; target <= +{ADDED_P50_TARGET_MS} ms "
            f"and below Triton's: {_verdict(ok)}"
        )
        lines.append(_against_mlserver(v, variant))
    return "\n".join(lines)


def _against_mlserver(v: View, variant: str) -> str:
    behind: list[str] = []
    rows = 0
    for proto in ("grpc", "http-binary"):
        for c in v.concurrencies():
            better: Callable[[float, float], bool]
            if c == 1:
                ours, theirs = (
                    v.lat("varigate", variant, proto, 1, "p50"),
                    v.lat("mlserver", variant, proto, 1, "p50"),
                )
                better = float.__lt__
            else:
                ours, theirs = v.tput("varigate", variant, proto, c), v.tput("mlserver", variant, proto, c)
                better = float.__gt__
            answered = any(m.summary.succeeded for m in v.windows("mlserver", variant, proto, c))
            if ours is None or theirs is None or not answered:
                continue  # MLServer answered none of them: not a row to be ahead on
            rows += 1
            if not better(float(ours), float(theirs)):
                behind.append(f"{proto} c={c}")
    verdict = _verdict(None if not rows else not behind)
    detail = f" (behind on {', '.join(behind)})" if behind else ""
    return (
        f"- {variant}: ahead of MLServer on {rows - len(behind)} of {rows} rows (p50 at c=1, throughput "
        f"above){detail}; target every row: {verdict}"
    )
