"""The first-run section of docs/BENCHMARKS.md, from one ``first_run_support.Measurement``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loadtest.benchmarks import common
from loadtest.benchmarks.first_run_probe import HEAVY, LOGICAL, SERVED_STATUSES
from varigate.contract.layout import model_name

if TYPE_CHECKING:
    from loadtest.benchmarks.first_run_support import Measurement

COMMAND = "python -m loadtest.benchmarks --only first-run"
TARGET_S = 360.0  # issue 11: a real MiniLM answer within 6 minutes of the start, install included
STOP_STATUS = 130  # scripts/run.sh's own exit after Ctrl-C (its INT trap)


def _short(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[: text.rfind(" ", 0, most)] + " …"


def clock(t_s: float) -> str:
    return f"{t_s:.1f} s ({int(t_s // 60)}:{int(t_s % 60):02d})"


def verdicts(m: Measurement) -> list[str]:
    at = m.timeline.at
    first = at.get("first inference")
    lines = [
        f"Issue 11's target, a real MiniLM answer on `{LOGICAL}` within {TARGET_S / 60:.0f} minutes of the "
        "start, install included: "
        + (
            f"**met** ({clock(first)})."
            if first is not None and first <= TARGET_S
            else f"**not met** ({clock(first) if first is not None else 'no answer'})."
        )
    ]
    c = m.cpu
    if c["windows"] and c["disturbed"] > c["windows"] / 2:
        lines.append(
            f"The machine was busy with other work ({c['disturbed']:.0f} of {c['windows']:.0f} windows "
            f"disturbed, other processes {c['other_cores']:.2f} cores on average): these times are longer "
            "than this run takes on a quiet machine."
        )
    if not m.quick:
        built = [v for v in HEAVY if m.build_report.get(v) in SERVED_STATUSES]
        served = [v for v in built if f"served: {model_name(LOGICAL, v)}" in at]
        end = at.get("background build finished", at.get("background build stopped"))
        restarted = "gateway process gone" in at
        statuses = ", ".join(f"{v}: {m.build_report.get(v, 'not reported')}" for v in HEAVY)
        gateway = "exited" if restarted else "never changed"
        ended = clock(end) if end is not None else "never (see why the watch ended)"
        lines.append(
            f"Heavy variants the build wrote: {len(built)} of {len(HEAVY)} ({statuses}); served without a "
            f"restart: {len(served)} of {len(built)}; the gateway process {gateway}; the build ended at "
            f"{ended}."
        )
    return lines


def _stop_line(m: Measurement) -> str:
    s = m.stopped
    code = "did not exit (killed)" if s.exit_code is None else f"exit status {s.exit_code}"
    expected = "as scripts/run.sh's INT trap exits" if s.exit_code == STOP_STATUS else "unexpected"
    strays = "none" if not s.strays else "; ".join(f"{pid} `{cmd.strip()}`" for pid, cmd in s.strays.items())
    return (
        f"Stop: SIGINT to the process group (what Ctrl-C sends) -> {code} ({expected}) after "
        f"{s.seconds:.1f} s; processes of the run still alive 10 s later: {strays}."
    )


def _block(lines: list[str]) -> str:
    return "```\n" + "\n".join(line.rstrip()[:160] for line in lines) + "\n```\n"


def _machine_line(m: Measurement) -> str:
    c = m.cpu
    return (
        f"The machine meanwhile ({c['windows']:.0f} windows of 5 s): steal {c['steal']:.1%} of CPU time, "
        f"other processes {c['other_cores']:.2f} cores on average (at most {c['other_cores_max']:.2f} in a "
        f"window), the run itself {c['own_cores']:.2f} cores on average; {c['disturbed']:.0f} windows "
        "disturbed (steal over 5% or other processes over 0.25 cores)."
    )


def render(m: Measurement) -> str:
    t = m.timeline
    mode = "quick" if m.quick else "full"
    rows = [
        [name, clock(at), t.detail.get(name, "")] for name, at in sorted(t.at.items(), key=lambda kv: kv[1])
    ]
    w = m.wheels
    intro = (
        f"Command: `{COMMAND} --first-run {mode}`, {common.today()}. A `git clone` of `{m.commit[:10]}` "
        f'("{_short(m.subject)}") into a temporary directory ({m.clone_s:.1f} s, before the clock starts), '
        "then "
        "`bash scripts/run.sh --http-port=P --grpc-port=P --metrics-port=P` (free loopback ports) in its "
        "own process group, as a user starts it: no .venv, no model_repository, an empty pip cache "
        "(`PIP_CACHE_DIR`), an empty artefact cache and Hugging Face home. pip took torch from: "
        f"{w.torch}; wheels: {w.local_files} from local files, {w.downloaded} downloaded, {w.cached} from "
        "pip's cache. The probe (tritonclient, gRPC) asks each second: ready, a tokenised sentence on "
        f"`{LOGICAL}`, the repository index, a request pinned to each new READY variant."
    )
    if m.quick:
        intro += (
            " **Quick mode**: stopped after the first answer; the heavy variants and the background build's "
            "end are measured by `--first-run full` (about 45 minutes), not in this run."
        )
    table = common.md_table(["milestone", "from start", "what"], rows)
    lines = [
        "## First run from a clean clone (issue 11)\n",
        intro + "\n",
        table + "\n",
        *(v + "\n" for v in verdicts(m)),
        _stop_line(m) + "\n",
        *(
            ["What the run printed from its stop on (seconds from the start):\n", _block(m.stop_log)]
            if m.stop_log
            else []
        ),
        _machine_line(m) + "\n",
        f"Why the watch ended: {m.ended}.\n",
    ]
    return "\n".join(lines)


def clean(m: Measurement) -> bool:
    """The run met its target, every written variant was served (full mode) and it stopped cleanly."""
    at = m.timeline.at
    ok = at.get("first inference", TARGET_S + 1) <= TARGET_S
    ok = ok and m.stopped.exit_code == STOP_STATUS and not m.stopped.strays
    if not m.quick:
        built = [v for v in HEAVY if m.build_report.get(v) in SERVED_STATUSES]
        ok = ok and all(f"served: {model_name(LOGICAL, v)}" in at for v in built)
        ok = ok and "gateway process gone" not in at
    return ok
