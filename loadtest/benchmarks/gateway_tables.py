"""The tables of the ``gateway`` benchmark section (the prose around them is in ``gateway_report.py``), and
the medians they are built from: undisturbed windows only, all of them when every one was disturbed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtest.benchmarks.common import Measured, fmt, kept, md_table, median
from loadtest.benchmarks.raw import RawWindow

MAIN_HEAD = (
    "path",
    "saturated seq/s",
    "x raw best batch",
    "p50 at c=1 (ms)",
    "added p50 vs raw batch 1 (ms)",
    "p99 at c=1 (ms)",
    "generator CPU at saturation (cores)",
    "gateway CPU at saturation (cores)",
    "mean batch (rows)",
    "windows kept/dropped",
)
BATCHING_HEAD = (
    "gRPC, concurrency 16",
    "seq/s",
    "p50 (ms)",
    "p99 (ms)",
    "mean batch (rows)",
    "generator CPU (cores)",
    "gateway CPU (cores)",
    "windows kept/dropped",
)
RAW_HEAD = ("batch", "rows/s", "p50 per run (ms)", "windows kept/dropped")


def kept_median(ms: list[Measured], f: Callable[[Measured], float | None]) -> float | None:
    good, _ = kept(ms)
    return median(f(m) for m in good)


def raw_median(ws: list[RawWindow], f: Callable[[RawWindow], float]) -> float | None:
    return median(f(w) for w in ([w for w in ws if not w.disturbed] or ws))


def windows_kept(ms: Sequence[Measured | RawWindow]) -> str:
    return f"{sum(not m.disturbed for m in ms)}/{sum(m.disturbed for m in ms)}"


def latency_ms(ms: list[Measured], q: str) -> float | None:
    return kept_median(ms, lambda m: m.summary.latency_ms[q])


def minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


@dataclass(frozen=True, slots=True)
class RawBaseline:
    """Raw onnxruntime's figures that the gateway's rows are compared with."""

    throughput: dict[int, float | None]  # rows/s by batch size
    best_batch: int
    best: float  # rows/s at the best batch size
    p50_b1_ms: float | None

    @classmethod
    def of(cls, raw: dict[int, list[RawWindow]]) -> RawBaseline:
        tput = {b: raw_median(ws, lambda w: w.throughput_per_s) for b, ws in raw.items()}
        best_b = max((b for b in tput if tput[b]), key=lambda b: tput[b] or 0.0)
        return cls(tput, best_b, tput[best_b] or 0.0, raw_median(raw[1], lambda w: w.p50_ms))

    def ratio(self, saturated: list[Measured]) -> float | None:
        tput = kept_median(saturated, lambda m: m.summary.throughput_per_s)
        return tput / self.best if tput and self.best else None

    def added_p50_ms(self, c1: list[Measured]) -> float | None:
        return minus(latency_ms(c1, "p50"), self.p50_b1_ms)


def main_table(
    raw: dict[int, list[RawWindow]],
    c1: dict[str, list[Measured]],
    saturated: dict[str, list[Measured]],
    shipped: list[Measured],
    base: RawBaseline,
) -> str:
    """Raw onnxruntime, the gateway per protocol, and the gateway with the compressor's shipped config."""
    rows = [_raw_row(raw, base)]
    rows += [_gateway_row(proto, sat, c1[proto], base) for proto, sat in saturated.items()]
    rows.append(_shipped_row(shipped, base))
    return md_table(MAIN_HEAD, rows)


def _raw_row(raw: dict[int, list[RawWindow]], base: RawBaseline) -> list[str]:
    return [
        "raw onnxruntime in-process",
        f"{base.best:.1f} (batch {base.best_batch})",
        "1.00x",
        fmt(base.p50_b1_ms, ".2f"),
        "-",
        fmt(raw_median(raw[1], lambda w: w.p99_ms), ".2f"),
        "-",
        "-",
        "-",
        windows_kept([w for ws in raw.values() for w in ws]),
    ]


def _gateway_row(proto: str, sat: list[Measured], lat: list[Measured], base: RawBaseline) -> list[str]:
    return [
        f"gateway, {proto}",
        fmt(kept_median(sat, lambda m: m.summary.throughput_per_s)),
        fmt(base.ratio(sat), ".3f", "x"),
        fmt(latency_ms(lat, "p50"), ".2f"),
        fmt(base.added_p50_ms(lat), "+.2f"),
        fmt(latency_ms(lat, "p99"), ".2f"),
        fmt(kept_median(sat, lambda m: m.generator_cores), ".2f"),
        fmt(kept_median(sat, lambda m: m.server_cores), ".2f"),
        fmt(kept_median(sat, lambda m: m.mean_batch_rows), ".1f"),
        f"{windows_kept(sat)} + {windows_kept(lat)}",
    ]


def _shipped_row(shipped: list[Measured], base: RawBaseline) -> list[str]:
    return [
        "gateway, grpc, shipped config",
        "-",
        "-",
        fmt(latency_ms(shipped, "p50"), ".2f"),
        fmt(base.added_p50_ms(shipped), "+.2f"),
        fmt(latency_ms(shipped, "p99"), ".2f"),
        "-",
        "-",
        "-",
        windows_kept(shipped),
    ]


def batching_section(c16: dict[str, list[Measured]], figures: dict[str, Path]) -> str:
    rows = [
        [
            f"batching {cfg}",
            fmt(kept_median(ms, lambda m: m.summary.throughput_per_s)),
            fmt(latency_ms(ms, "p50")),
            fmt(latency_ms(ms, "p99")),
            fmt(kept_median(ms, lambda m: m.mean_batch_rows), ".1f"),
            fmt(kept_median(ms, lambda m: m.generator_cores), ".2f"),
            fmt(kept_median(ms, lambda m: m.server_cores), ".2f"),
            windows_kept(ms),
        ]
        for cfg, ms in c16.items()
    ]
    figure = f"![CDF at concurrency 16](benchmarks/{figures['c16'].name})"
    return (
        f"\n### Dynamic batching on vs off, concurrency 16\n\n{md_table(BATCHING_HEAD, rows)}\n\n{figure}\n"
    )


def raw_section(raw: dict[int, list[RawWindow]], base: RawBaseline) -> str:
    rows = [
        [str(b), fmt(base.throughput[b]), fmt(raw_median(ws, lambda w: w.p50_ms), ".2f"), windows_kept(ws)]
        for b, ws in raw.items()
    ]
    return "\n### Raw onnxruntime by batch size\n\n" + md_table(RAW_HEAD, rows)
