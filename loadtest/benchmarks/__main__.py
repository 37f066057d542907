"""``python -m loadtest.benchmarks [--only SECTION ...]``: regenerate docs/BENCHMARKS.md.

Sections run in order; ``--only`` re-runs some and keeps the others' last results. ``first-run`` (a clean
clone's ``scripts/run.sh``, timed: about 45 minutes, 6-8 with ``--first-run quick``) runs only when named.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

SECTIONS = {
    "variants": "loadtest.benchmarks.variants",
    "gateway": "loadtest.benchmarks.gateway",
    "peers": "loadtest.benchmarks.peers",
    "fleet": "loadtest.benchmarks.fleet",
    "policy": "loadtest.benchmarks.policy",
    "overload": "loadtest.benchmarks.overload",
    "drift": "loadtest.benchmarks.drift",
    "frontier": "loadtest.benchmarks.frontier",
    "first-run": "loadtest.benchmarks.first_run",
}
LONG = ("frontier", "first-run", "policy")  # 25-40+ minutes each: run only when named
DEFAULT = [name for name in SECTIONS if name not in LONG]  # what a run without --only re-runs
DOCS = Path("docs")
HEADER = """# Benchmarks

Every number here was measured on one of this project's shared 2-core machines, side by side in one run,
and is reproduced by the command quoted with each table. The CPU differs between machines (int8 runs
several times faster with VNNI or AMX than with AVX2 alone), so each section names the CPU and the
kernel-relevant flags its run read from /proc/cpuinfo: ratios within a section compare, absolute times
across sections do not. Each measurement
window records the hypervisor's CPU steal and other processes' CPU use; disturbed windows are dropped
and medians of the rest are quoted. Compare ratios, not absolute times.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.benchmarks", description=__doc__)
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="sections to re-run")
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--rounds", type=int, default=7, help="interleaved measurement rounds per point")
    p.add_argument("--docs", type=Path, default=DOCS)
    p.add_argument("--first-run", choices=["full", "quick"], default="full", help="first-run: the mode")
    p.add_argument("--commit", default="HEAD", help="first-run: the commit to clone")
    p.add_argument(
        "--first-run-keep",
        type=Path,
        help="first-run: keep the clone (and the repository it built) in this directory",
    )
    p.add_argument("--cuts", nargs="+", help="frontier: only these cuts (labels as in the table)")
    p.add_argument(
        "--policy-quick",
        action="store_true",
        help="policy: one repetition at 0.15x lengths (smoke, not a result)",
    )
    p.add_argument("--no-triton", action="store_true", help="policy: leave the Triton baseline out")
    p.add_argument(
        "--fleet-quick", action="store_true", help="fleet: one round of short windows (smoke, not a result)"
    )
    args = p.parse_args(argv)
    (args.docs / "benchmarks").mkdir(parents=True, exist_ok=True)
    for name in args.only or DEFAULT:
        print(f"== {name}", file=sys.stderr, flush=True)
        text = importlib.import_module(SECTIONS[name]).run(args)
        (args.docs / "benchmarks" / f"{name}.md").write_text(text)
    parts = [HEADER]
    for name in SECTIONS:
        f = args.docs / "benchmarks" / f"{name}.md"
        if f.exists():
            parts.append(f.read_text())
    (args.docs / "BENCHMARKS.md").write_text("\n".join(parts))
    print(f"wrote {args.docs / 'BENCHMARKS.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
