"""Markdown for the ``gateway`` benchmark section (measurement lives in ``gateway.py``, the tables in
``gateway_tables.py``). Figures are linked relative to ``docs/``, where the sections are concatenated into
BENCHMARKS.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loadtest.benchmarks.common import Measured, fmt, median
from loadtest.benchmarks.gateway_tables import (
    RawBaseline,
    batching_section,
    kept_median,
    main_table,
    raw_median,
    raw_section,
)
from loadtest.benchmarks.raw import RawWindow

# the issues' targets: (issue 4, issue 3)
THROUGHPUT_TARGETS = (0.95, 0.90)
ADDED_P50_TARGETS_MS = (1.0, 1.5)


@dataclass(frozen=True, slots=True)
class Results:
    raw: dict[int, list[RawWindow]]  # by batch size
    c1: dict[str, list[Measured]]  # by protocol, batching on
    saturated: dict[str, list[Measured]]  # by protocol, batching on
    c16: dict[str, list[Measured]]  # gRPC, by batching configuration ("on", "off")
    c1_shipped: list[Measured]  # gRPC, the compressor's config
    demo: Measured | None  # open loop with bursts

    def all_points(self) -> list[list[Measured]]:
        return [*self.c1.values(), *self.saturated.values(), *self.c16.values(), self.c1_shipped]


@dataclass(frozen=True, slots=True)
class Setup:
    """How the section ran, for the text around the tables."""

    command: str
    date: str
    rounds: int
    payload: str
    gateway_args: str
    configs: dict[str, str]
    saturation: int
    windows_s: tuple[float, float, float, float]  # raw, concurrency 1, loaded, warm-up of loaded


def render(results: Results, figures: dict[str, Path], setup: Setup) -> str:
    base = RawBaseline.of(results.raw)
    ratios = {proto: base.ratio(sat) for proto, sat in results.saturated.items()}
    added = {proto: base.added_p50_ms(results.c1[proto]) for proto in results.saturated}
    parts = [
        "## Gateway vs raw onnxruntime: MiniLM int8, sequence length 64\n",
        _intro(setup),
        main_table(results.raw, results.c1, results.saturated, results.c1_shipped, base),
        _machine(results),
    ]
    if any(all(m.disturbed for m in ms) for ms in results.all_points() if ms):
        parts.append(
            "\n**Every window of at least one point was disturbed** (steal or other processes): those "
            "medians include disturbed windows; rerun on a quiet machine."
        )
    parts.append(f"\n![latency CDF at concurrency 1](benchmarks/{figures['c1'].name})\n")
    parts.append(batching_section(results.c16, figures))
    if results.demo is not None:
        parts.append(_demo(results.demo, figures))
    parts += [_targets(ratios, added, base.best, base.best_batch), _limits(results, base.best_batch)]
    parts += [_checks(results), raw_section(results.raw, base)]
    return "\n".join(parts) + "\n"


def _intro(s: Setup) -> str:
    raw_s, c1_s, load_s, warm_s = s.windows_s
    configs = "\n".join(f"- `{name}`: {text}" for name, text in s.configs.items())
    return (
        f"Command: `{s.command}`, {s.date}. {s.rounds} round{'s' if s.rounds != 1 else ''}; every round runs "
        f"each point once in a shuffled order (raw windows {raw_s:g} s, concurrency-1 windows {c1_s:g} s, "
        f"loaded windows {load_s:g} s after {warm_s:g} s of warm-up). Payload: {s.payload}. Raw: an "
        "onnxruntime session in the benchmark process, 2 intra-op threads. Gateway: `varigate serve` in a "
        f"subprocess on loopback ports{' with `' + s.gateway_args + '`' if s.gateway_args else ''} (its "
        "default layout), serving a copy of the repository's `minilm.int8` whose config.pbtxt differs only "
        f"in batching:\n{configs}\n\nLoad: this toolkit's closed loop (tritonclient asyncio clients, "
        "pre-built inputs) in the benchmark process, sharing the 2 cores with the gateway. Saturation = "
        f"concurrency {s.saturation}. Medians over undisturbed windows; ratios are ratios of medians.\n"
    )


def _demo(demo: Measured, figures: dict[str, Path]) -> str:
    s = demo.summary
    return (
        f"\n### Open loop with bursts ({s.description})\n\n{s.arrivals} arrivals; throughput "
        f"{s.throughput_per_s:.1f}/s; p50 {fmt(s.latency_ms['p50'])} ms, p99 {fmt(s.latency_ms['p99'])} ms "
        f"(from the scheduled time: queueing during bursts included); errors {s.errors or 'none'}; generator "
        f"CPU {s.generator_cpu_cores:.2f} cores; gateway CPU {demo.server_cores:.2f} cores.\n\n"
        f"![timeline](benchmarks/{figures['timeline'].name})\n"
    )


def _targets(
    ratios: dict[str, float | None], added: dict[str, float | None], best: float, best_b: int
) -> str:
    lines = ["\n### Targets\n"]
    for proto in ("grpc", "http-binary"):
        r = ratios.get(proto)
        verdict = _verdict(r, lambda x, t: x >= t, THROUGHPUT_TARGETS, "x")
        lines.append(
            f"- saturated throughput over {proto}: {fmt(r, '.3f', 'x')} raw onnxruntime's best batch "
            f"({best:.1f} seq/s at batch {best_b}); target >= {THROUGHPUT_TARGETS[0]}x: {verdict}"
        )
    for proto, a in added.items():
        verdict = _verdict(a, lambda x, t: x < t, ADDED_P50_TARGETS_MS, " ms")
        lines.append(
            f"- added p50 at concurrency 1 over {proto}: {fmt(a, '+.2f')} ms; target < "
            f"{ADDED_P50_TARGETS_MS[0]} ms: {verdict}"
        )
    lines.append("- Triton and MLServer side by side, in one run: section `peers`.")
    return "\n".join(lines)


def _verdict(
    value: float | None, ok: Callable[[float, float], bool], targets: tuple[float, float], unit: str
) -> str:
    if value is None:
        return "not measured"
    if ok(value, targets[0]):
        return "met"
    return f"**missed** (issue 3's {targets[1]}{unit}: {'met' if ok(value, targets[1]) else 'missed'})"


def _machine(results: Results) -> str:
    windows = [w.window for ws in results.raw.values() for w in ws]
    windows += [m.window for ms in results.all_points() for m in ms]
    steal = median(w.steal_fraction for w in windows)
    other = median(w.other_cores for w in windows)
    return (
        f"\nThe machine meanwhile (median over all {len(windows)} windows): steal {fmt(steal, '.1%')} of CPU "
        f"time, other processes {fmt(other, '.2f')} cores. A window is dropped when steal exceeds 5% or "
        "other "
        "processes use more than 0.25 cores."
    )


def _limits(results: Results, best_b: int) -> str:
    raw_ms = raw_median(results.raw[best_b], lambda w: 1000.0 * w.cpu_cores / w.throughput_per_s)

    def per_seq(ms: list[Measured], cores: Callable[[Measured], float]) -> float | None:
        return kept_median(ms, lambda m: 1000.0 * cores(m) / m.summary.throughput_per_s)

    sat = results.saturated.items()
    gateway = ", ".join(f"{fmt(per_seq(ms, lambda m: m.server_cores), '.2f')} ms over {p}" for p, ms in sat)
    generator = ", ".join(
        f"{fmt(per_seq(ms, lambda m: m.generator_cores), '.2f')} ms over {p}" for p, ms in sat
    )
    c16 = {cfg: kept_median(ms, lambda m: m.mean_batch_rows) for cfg, ms in results.c16.items()}
    return "\n".join(
        [
            "\n### CPU and batches (measured)\n",
            f"- CPU per sequence at saturation: raw onnxruntime {fmt(raw_ms, '.2f')} ms (batch {best_b}, its "
            f"own threads); the gateway process {gateway}; the load generator {generator}.",
            f"- Mean executed batch at concurrency 16 over gRPC: {fmt(c16.get('on'), '.1f')} rows with "
            f"batching on, {fmt(c16.get('off'), '.1f')} with it off.",
            "- Where the gateway's time goes, sampled with py-spy: section `peers`.",
        ]
    )


def _checks(results: Results) -> str:
    every = [m for ms in results.all_points() for m in ms] + ([results.demo] if results.demo else [])
    checks = [m.check for m in every if m.check is not None]
    bad = [d for c in checks for d in c.disagreements]
    notes = sum(bool(c.notes) for c in checks)
    if not checks:
        return "\n/metrics could not be read: no cross-check."
    noted = f" ({notes} windows noted extra server-side executions)" if notes else ""
    if not bad:
        return (
            f"\nMetrics cross-check: in all {len(checks)} windows the gateway's "
            "`nv_inference_request_success` grew by exactly the successes the generator received and "
            f"`nv_inference_count` by their rows{noted}."
        )
    return f"\nMetrics cross-check: {len(bad)} disagreements in {len(checks)} windows: " + "; ".join(bad[:5])
