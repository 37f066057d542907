"""Markdown for the ``peers`` benchmark section (measurement in ``peers.py``). Every figure and every
verdict is computed from the run's own windows: medians of the undisturbed ones (all of them, flagged, when
every window of a point was disturbed)."""

from __future__ import annotations

from loadtest.benchmarks.common import fmt, md_table, median
from loadtest.benchmarks.gateway_tables import kept_median, raw_median, windows_kept
from loadtest.benchmarks.peers_data import Results, Setup, View
from loadtest.benchmarks.peers_profile import Profile
from loadtest.benchmarks.peers_targets import targets

HEAD = (
    "system",
    "protocol",
    "c=1 p50 / p99 (ms)",
    "c=4 seq/s",
    "c=16 seq/s / p99 (ms)",
    "c=32 seq/s / p99 (ms)",
    "c=64 seq/s / p99 (ms)",
    "best seq/s (x raw)",
    "server CPU at c=32 (cores)",
    "mean batch at c=32",
    "windows kept/dropped",
)


def render(results: Results, setup: Setup) -> str:
    v = View(results)
    variants = sorted({p.variant for p in results.measured}, key=lambda x: x != "int8")
    parts = ["## Peers: varigate, Triton and MLServer against raw onnxruntime (MiniLM, sequence length 64)\n"]
    parts.append(_intro(setup))
    for variant in variants:
        parts.append(_model_table(v, variant))
    parts.append(_layouts(v))
    parts.append(targets(v, variants))
    parts += [_profile(p) for p in results.profiles]
    parts.append(_machine(results))
    return "\n".join(parts) + "\n"


def _intro(s: Setup) -> str:
    raw_s, c1_s, load_s, warm_s = s.windows_s
    systems = "\n".join(f"- **{name}**: {text}" for name, text in s.systems.items())
    rounds = f"{s.rounds} round{'s' if s.rounds != 1 else ''}"
    return (
        f"Command: `{s.command}`, {s.date}, {s.cores} cores. {rounds}; every round runs each point "
        f"once in a shuffled order (raw windows {raw_s:g} s, concurrency-1 windows {c1_s:g} s, loaded "
        f"windows {load_s:g} s after {warm_s:g} s of warm-up). Payload: {s.payload}. Raw: an onnxruntime "
        "session in the benchmark process, one intra-op thread per core, onnxruntime's defaults otherwise; "
        f"its best batch is the limit. Systems, all running at once on loopback:\n{systems}\n\n"
        "Load: this toolkit's closed loop (tritonclient asyncio clients, pre-built inputs) in the benchmark "
        "process, sharing the cores with the server it drives. MLServer refuses the binary tensor extension "
        "(HTTP 422), so its `http-binary` rows are HTTP JSON. Medians over undisturbed windows.\n"
    )


def _cell(v: View, system: str, variant: str, proto: str, c: int) -> str:
    windows = v.windows(system, variant, proto, c)
    if windows and not any(m.summary.succeeded for m in windows):
        kinds = sorted({kind for m in windows for kind in m.summary.errors})
        return f"every request failed ({', '.join(kinds) or 'no answer'})"
    t = v.tput(system, variant, proto, c)
    if c == 1:
        p50, p99 = (v.lat(system, variant, proto, 1, q) for q in ("p50", "p99"))
        return f"{fmt(p50, '.2f')} / {fmt(p99, '.2f')}"
    if c == 4:
        return fmt(t)
    return f"{fmt(t)} / {fmt(v.lat(system, variant, proto, c, 'p99'))}"


def _model_table(v: View, variant: str) -> str:
    best, best_b = v.raw_best(variant)
    raw_rows = sorted((b, ws) for (var, b), ws in v.r.raw.items() if var == variant)
    raw_line = ", ".join(
        f"batch {b}: {fmt(raw_median(ws, lambda w: w.throughput_per_s))} seq/s (p50 "
        f"{fmt(raw_median(ws, lambda w: w.p50_ms), '.2f')} ms, {windows_kept(ws)})"
        for b, ws in raw_rows
    )
    rows = [
        [
            "raw onnxruntime",
            "in-process",
            f"{fmt(v.raw_p50_b1(variant), '.2f')} (batch 1)",
            "",
            "",
            "",
            "",
            f"{fmt(best)} (batch {best_b}, 1.00x)",
            "",
            "",
            "",
        ]
    ]
    systems = list(dict.fromkeys(p.system for p in v.r.measured if p.variant == variant))
    for system in systems:
        for proto in ("grpc", "http-binary"):
            if not any(v.windows(system, variant, proto, c) for c in v.concurrencies()):
                continue
            top = v.best(system, variant, proto)
            at32 = v.windows(system, variant, proto, 32)
            every = [m for c in v.concurrencies() for m in v.windows(system, variant, proto, c)]
            rows.append(
                [
                    system,
                    proto,
                    *[_cell(v, system, variant, proto, c) for c in (1, 4, 16, 32, 64)],
                    f"{fmt(top)} ({fmt(top / best if top and best else None, '.2f', 'x')})",
                    fmt(kept_median(at32, lambda m: m.server_cores), ".2f"),
                    fmt(kept_median(at32, lambda m: m.mean_batch_rows), ".1f"),
                    windows_kept(every),
                ]
            )
    return f"\n### minilm.{variant}\n\nRaw onnxruntime: {raw_line}.\n\n" + md_table(HEAD, rows)


def _layouts(v: View) -> str:
    names = ["varigate", *sorted(s for s in {p.system for p in v.r.measured} if s.startswith("varigate --"))]
    if len(names) == 1:
        return ""
    best, _ = v.raw_best("int8")
    rows, score = [], {}
    for name in names:
        t16, t32 = v.tput(name, "int8", "grpc", 16), v.tput(name, "int8", "grpc", 32)
        p50 = v.lat(name, "int8", "grpc", 1, "p50")
        score[name] = (t32 or 0.0, -(p50 or 1e9))
        rows.append(
            [
                name + (" (the default)" if name == "varigate" else ""),
                fmt(p50, ".2f"),
                f"{fmt(t16)} / {fmt(v.lat(name, 'int8', 'grpc', 16, 'p99'))}",
                f"{fmt(t32)} / {fmt(v.lat(name, 'int8', 'grpc', 32, 'p99'))}",
                fmt(t32 / best if t32 and best else None, ".2f", "x"),
            ]
        )
    fastest = max(names, key=lambda n: score[n][0])
    quickest = max(names, key=lambda n: score[n][1])
    head = (
        "layout, minilm.int8 over gRPC",
        "c=1 p50 (ms)",
        "c=16 seq/s / p99",
        "c=32 seq/s / p99",
        "c=32 x raw",
    )
    return (
        "\n### Layout candidates\n\n" + md_table(head, rows) + f"\n\nIn this run the most throughput at c=32 "
        f"came from `{fastest}` and the lowest p50 at c=1 from `{quickest}`.\n"
    )


def _profile(p: Profile) -> str:
    s, st = p.window.summary, p.stacks
    title = f"\n### Where varigate's time goes (py-spy): {p.label}\n"
    if not st.samples:
        return title + f"\nNo samples: {st.error or 'py-spy recorded nothing'}.\n"
    shares = ((name, n / st.samples) for name, n in st.threads.items())
    threads = ", ".join(f"{name} {share:.0%}" for name, share in shares if share >= 0.01)
    own = md_table(("event loop, own time", "share of its samples"), _shares(st.main_self, st.threads))
    inc = md_table(
        ("event loop, with callees", "share of its samples"), _shares(st.main_inclusive, st.threads)
    )
    return (
        f"{title}\n{s.throughput_per_s:.1f} seq/s, p50 {fmt(s.latency_ms['p50'], '.2f')} ms during the "
        f"samples; server CPU {p.window.server_cores:.2f} cores. Samples by thread (py-spy counts a thread "
        f"when it runs Python or native code, not while it waits): {threads}.\n\n{own}\n\n{inc}\n"
    )


def _shares(frames: list[tuple[str, int]], threads: dict[str, int]) -> list[list[str]]:
    main = threads.get("MainThread", 0) or 1
    return [[f"`{f}`", f"{n / main:.1%}"] for f, n in frames]


def _machine(results: Results) -> str:
    windows = [w.window for ws in results.raw.values() for w in ws]
    windows += [m.window for ms in results.measured.values() for m in ms]
    dropped = sum(w.disturbed() for w in windows)
    return (
        f"\nThe machine meanwhile (median over all {len(windows)} windows): steal "
        f"{fmt(median(w.steal_fraction for w in windows), '.1%')} of CPU time, other processes "
        f"{fmt(median(w.other_cores for w in windows), '.2f')} cores; {dropped} windows dropped as disturbed "
        "(steal above 5% or other processes above 0.25 cores)."
    )
