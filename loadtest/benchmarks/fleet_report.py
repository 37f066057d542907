"""Markdown for the ``fleet`` benchmark section (measurement in ``fleet.py``). Every figure and every
verdict is computed from the run's own windows: medians of the undisturbed ones (all of them, flagged, when
every window of a point was disturbed)."""

from __future__ import annotations

from loadtest.benchmarks.common import fmt, md_table, median
from loadtest.benchmarks.fleet_data import (
    DIRECT,
    GATEWAY,
    GATEWAY_NO_DELAY,
    GATEWAY_TWO,
    HOP_CONCURRENCY,
    HOP_SYSTEMS,
    MODEL,
    SCALE_CONCURRENCY,
    Results,
    Setup,
    View,
)
from loadtest.benchmarks.gateway_tables import minus, windows_kept

TARGET_ADDED_P50_MS = 1.0  # issue 14: at most 1 ms added at p50 ...
TARGET_SATURATED_RATIO = 1.0  # ... and no throughput lost at saturation
IDLE_CORES = 0.25  # idle CPU beyond this at saturation: the gateway did not compete with Triton for cores
LABEL = {
    DIRECT: "client -> Triton 1 (direct)",
    GATEWAY: "client -> gateway -> Triton 1",
    GATEWAY_NO_DELAY: "client -> gateway (queue delay 0) -> Triton 1",
    GATEWAY_TWO: "client -> gateway -> Triton 1, Triton 2",
}


def render(results: Results, setup: Setup) -> str:
    v = View(results, setup)
    parts = ["## Fleet: the gateway in front of real Triton servers (MiniLM int8, sequence length 64)\n"]
    if setup.quick:
        parts.append("**A smoke run (`--fleet-quick`: one round of short windows), not a result.**\n")
    parts += [_intro(setup), _hop(v), _hop_verdict(v), _cpu(v), _scale(v), _machine(results)]
    return "\n".join(parts) + "\n"


def _intro(s: Setup) -> str:
    c1_s, load_s, warm_s = s.windows_s
    gateways = "\n".join(f"- **{LABEL[name]}**: {flags}" for name, flags in s.gateways.items())
    rounds = f"{s.rounds} round{'s' if s.rounds != 1 else ''}"
    return (
        f"Command: `{s.command}`, {s.date}, {s.cores} cores. {rounds}; every round runs each point once in "
        f"a shuffled order (concurrency-1 windows {c1_s:g} s, loaded windows {load_s:g} s after {warm_s:g} "
        f"s of warm-up). Payload: {s.payload}, model `{MODEL}` addressed by name (pinned: Triton's batcher "
        f"semantics at the gateway too). Triton 1 and Triton 2, the same configuration: {s.triton}. "
        "Gateways (TRITON_n: that server's gRPC address; `--placement remote`: no batch runs in the "
        "gateway's process; `--default-queue-timeout-ms 0` because Triton's config sets no queue timeout, "
        f"so both queue the same load instead of one refusing part of it):\n{gateways}\n\n"
        "Load: this toolkit's closed loop over gRPC (tritonclient asyncio clients, pre-built inputs) in the "
        "benchmark process. Every server and gateway runs at once on loopback on the same cores as the load "
        "generator; each window records the CPU of each of them (a Triton with its Python-backend stubs). "
        "Medians over undisturbed windows.\n"
    )


def _lat(v: View, system: str, c: int) -> str:
    if v.windows(system, c) and not any(w.measured.summary.succeeded for w in v.windows(system, c)):
        kinds = sorted({k for w in v.windows(system, c) for k in w.measured.summary.errors})
        return f"every request failed ({', '.join(kinds) or 'no answer'})"
    p50, p99 = v.lat(system, c, "p50"), v.lat(system, c, "p99")
    if c == 1:
        return f"{fmt(p50, '.2f')} / {fmt(p99, '.2f')}"
    return f"{fmt(v.tput(system, c))} / {fmt(p50, '.0f')} / {fmt(p99, '.0f')}"


def _hop(v: View) -> str:
    direct_p50 = v.lat(DIRECT, 1, "p50")
    direct_best, _ = v.best(DIRECT)
    rows = []
    for system in HOP_SYSTEMS:
        best, at = v.best(system)
        added = minus(v.lat(system, 1, "p50"), direct_p50) if system != DIRECT else None
        ratio = best / direct_best if best and direct_best else None
        every = [w for c in HOP_CONCURRENCY for w in v.windows(system, c)]
        rows.append(
            [
                LABEL[system],
                _lat(v, system, 1),
                *[_lat(v, system, c) for c in HOP_CONCURRENCY if c > 1],
                "" if system == DIRECT else fmt(added, "+.2f"),
                f"{fmt(best)} at c={at} ({fmt(ratio, '.2f', 'x')})",
                str(sum(v.failed(system, c) for c in HOP_CONCURRENCY)),
                windows_kept([w.measured for w in every]),
            ]
        )
    head = (
        "(a) gRPC, minilm.int8",
        "c=1 p50 / p99 (ms)",
        *[f"c={c} seq/s / p50 / p99 (ms)" for c in HOP_CONCURRENCY if c > 1],
        "added p50 at c=1 vs direct (ms)",
        "saturated seq/s (x direct)",
        "failed requests",
        "windows kept/dropped",
    )
    return "\n### (a) The cost of the gateway hop\n\n" + md_table(head, rows)


def _verdict(ok: bool | None) -> str:
    return "no figure" if ok is None else ("**met**" if ok else "**missed**")


def _hop_verdict(v: View) -> str:
    direct_p50 = v.lat(DIRECT, 1, "p50")
    direct_best, _ = v.best(DIRECT)
    lines = []
    for system in (GATEWAY, GATEWAY_NO_DELAY):
        added = minus(v.lat(system, 1, "p50"), direct_p50)
        best, at = v.best(system)
        ratio = best / direct_best if best and direct_best else None
        spread = v.round_ratios(system, DIRECT, at)
        noise = (
            f"; its rounds' own ratios at c={at} (same round, both kept) span "
            f"{min(spread):.2f}-{max(spread):.2f}x"
            if spread
            else ""
        )
        met_p50 = None if added is None else added <= TARGET_ADDED_P50_MS
        met_tput = None if ratio is None else ratio >= TARGET_SATURATED_RATIO
        lines.append(
            f"- **{LABEL[system]}**: {fmt(added, '+.2f')} ms at p50, concurrency 1 (target at most "
            f"+{TARGET_ADDED_P50_MS:g} ms): {_verdict(met_p50)}. Saturated throughput "
            f"{fmt(ratio, '.2f', 'x')} direct Triton's (target at least {TARGET_SATURATED_RATIO:.2f}x): "
            f"{_verdict(met_tput)}{noise}."
        )
    second = minus(v.lat(GATEWAY, 1, "p50"), v.lat(GATEWAY_NO_DELAY, 1, "p50"))
    if second is None:
        found = "This run has no concurrency-1 figure for both gateways."
    elif second > 0:
        found = f"Here the second wait cost {second:.2f} ms at p50, concurrency 1."
    else:
        found = (
            f"Here the gateway without a queue delay was not faster at concurrency 1 ({second:+.2f} ms at "
            "p50 for the one with it), so a second wait is not what the hop costs."
        )
    return (
        "\nAgainst issue 14's target (at most 1 ms added at p50, no throughput lost at saturation):\n\n"
        + "\n".join(lines)
        + "\n\nWith the repository's batching settings a lone request through the gateway may wait the "
        "model's `max_queue_delay` twice, in the gateway's batcher and again in Triton's; with the "
        "gateway's set to 0 it would wait once, at Triton, the gateway still batching what queues while "
        f"the server's slots are busy. {found}\n"
    )


def _cpu(v: View) -> str:
    rows = []
    for system in HOP_SYSTEMS:
        for c in HOP_CONCURRENCY:
            gen, gw, tri = v.generator_cpu(system, c), v.cpu(system, c, "gateway"), v.cpu(system, c, "triton")
            rows.append(
                [
                    LABEL[system],
                    str(c),
                    fmt(gen, ".2f"),
                    fmt(gw, ".2f") if system != DIRECT else "",
                    fmt(tri, ".2f"),
                    fmt(_together(v, system, c), ".2f"),
                    fmt(v.mean_batch(system, c), ".1f"),
                ]
            )
    head = (
        "CPU per window (cores)",
        "concurrency",
        "load generator",
        "gateway",
        "Triton 1 (+ stubs)",
        "together",
        "mean batch (rows; the gateway's for gateway rows)",
    )
    gw32, tri32 = v.cpu(GATEWAY, 32, "gateway"), v.cpu(GATEWAY, 32, "triton")
    direct32 = v.cpu(DIRECT, 32, "triton")
    together, other = v.section_cpu(GATEWAY, 32), _other(v, GATEWAY, 32)
    idle = v.s.cores - together - other if together is not None and other is not None else None
    if idle is None:
        machine = "This run has no figure for the machine's idle CPU at concurrency 32."
    elif idle >= IDLE_CORES:
        machine = (
            f"With each Triton on one intra-op thread the machine still had {idle:.2f} cores idle then "
            "(beside the section's processes and the rest of the machine), so the gateway did not take "
            "CPU that Triton could have used: what it cost here is the hop itself (its batching, the "
            "second gRPC round trip), not competition for cores."
        )
    else:
        machine = (
            f"The machine was full then ({idle:.2f} cores idle): the gateway's own CPU (decoding, batching, "
            "the second gRPC round trip) came out of the cores Triton computes on, and the throughput it "
            "cost here includes that competition."
        )
    return (
        "\n" + md_table(head, rows) + f"\n\nWhat this shows, and what it cannot: at concurrency 32 the "
        f"gateway used {fmt(gw32, '.2f')} cores and Triton {fmt(tri32, '.2f')} behind it, against "
        f"Triton's {fmt(direct32, '.2f')} when driven directly, on a machine of {v.s.cores} cores shared "
        f"with the load generator. {machine} On this machine the gateway and Triton share the cores; a "
        "deployment runs the gateway on other machines than its Triton servers, where its CPU competes "
        "with none of theirs and what it adds is the hop's latency and its batching.\n"
    )


def _other(v: View, system: str, c: int) -> float | None:
    """Median cores of the processes outside the section during the system's windows."""
    return median(w.measured.window.other_cores for w in v.kept(system, c)[0])


def _together(v: View, system: str, c: int) -> float | None:
    """Median cores of the load generator and the system's processes together."""
    found = [v.generator_cpu(system, c), v.cpu(system, c, "gateway"), v.cpu(system, c, "triton")]
    return sum(x for x in found if x is not None) if found[0] is not None else None


def _scale(v: View) -> str:
    rows = []
    for system in (GATEWAY, GATEWAY_TWO):
        names = [n for n in v.s.uses[system] if n.startswith("triton")]
        each = ", ".join(
            f"{n} {fmt(median(w.cores.get(n) for w in v.kept(system, 32)[0]), '.2f')}" for n in names
        )
        rows.append(
            [
                LABEL[system],
                *[
                    f"{fmt(v.tput(system, c))} / {fmt(v.lat(system, c, 'p99'), '.0f')}"
                    for c in SCALE_CONCURRENCY
                ],
                fmt(v.cpu(system, 32, "gateway"), ".2f"),
                each,
                fmt(v.mean_batch(system, 32), ".1f"),
                windows_kept([w.measured for c in SCALE_CONCURRENCY for w in v.windows(system, c)]),
            ]
        )
    head = (
        "(b) gRPC, minilm.int8",
        *[f"c={c} seq/s / p99 (ms)" for c in SCALE_CONCURRENCY],
        "gateway CPU at c=32",
        "each Triton's CPU at c=32 (cores)",
        "gateway's mean batch at c=32",
        "windows kept/dropped",
    )
    ratios = ", ".join(
        f"c={c}: {fmt(r, '.2f', 'x')}"
        for c in SCALE_CONCURRENCY
        for one, two in [(v.tput(GATEWAY, c), v.tput(GATEWAY_TWO, c))]
        for r in [two / one if one and two else None]
    )
    return (
        "\n### (b) One Triton server against two, through the gateway\n\n" + md_table(head, rows) + "\n\n"
        f"Two servers over one: {ratios}. Each server runs one instance of {v.s.triton_threads} intra-op "
        f"thread{'s' if v.s.triton_threads != 1 else ''}, so two have twice the compute threads of one, "
        f"but on this machine both share its {v.s.cores} cores with the gateway and the load generator: at "
        f"c=32 the section's processes used {fmt(_together(v, GATEWAY, 32), '.2f')} cores with one server "
        f"and {fmt(_together(v, GATEWAY_TWO, 32), '.2f')} with two. The ratio shows that the gateway "
        "spreads batches over both servers (each one's CPU above) and what a second server gains from "
        "cores one leaves idle, not what scale-out gains: that needs each server on a machine of its own, "
        "where a second server brings its own cores.\n"
    )


def _machine(results: Results) -> str:
    windows = [w.measured.window for ws in results.measured.values() for w in ws]
    dropped = sum(w.disturbed() for w in windows)
    return (
        f"The machine meanwhile (median over all {len(windows)} windows): steal "
        f"{fmt(median(w.steal_fraction for w in windows), '.1%')} of CPU time, processes outside this "
        f"section {fmt(median(w.other_cores for w in windows), '.2f')} cores; {dropped} windows dropped as "
        "disturbed (steal above 5% or other processes above 0.25 cores)."
    )
