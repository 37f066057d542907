"""The first run from a clean clone: ``bash scripts/run.sh`` exactly as a user starts it, timed.

A ``git clone`` of this repository's HEAD (or ``--commit``) into a temporary directory: no .venv, no
model_repository, a fresh empty pip cache (``PIP_CACHE_DIR``), a fresh artefact cache and Hugging Face
home, nothing of this checkout's environment (``VARIGATE_*``, its .venv on PATH). ``run.sh`` is started in
its own process group with three free loopback ports; every process it starts carries a tag in its
environment. Recorded, in seconds from the start: venv ready, quick variants built, the gateway's ready
line, its health endpoint, the first real MiniLM answer on the logical model ``minilm`` (tritonclient, a
tokenised sentence, polled each second), and in the full mode each heavy variant READY in the repository
index and answering a request pinned to it, the variant the logical model chose, and the background build's
end. Then SIGINT to the process group (Ctrl-C): exit code, time to stop, tagged processes left behind. The
machine meanwhile: the CPU (``loadtest.cpu.describe``), steal and other processes' CPU, and where pip took
torch from (its log). The quick mode stops after the first answer (~6-8 minutes on 2 cores); the full mode
waits for every variant (~45 minutes).

``python -m loadtest.benchmarks --only first-run [--first-run quick|full] [--commit SHA]`` (section) or
``python -m loadtest.benchmarks.first_run --quick``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO

from loadtest.benchmarks import first_run_report
from loadtest.benchmarks.first_run_probe import Probe, watch
from loadtest.benchmarks.first_run_support import (
    TAG_ENV,
    CpuLedger,
    Measurement,
    Timeline,
    start_group,
    stop_group,
    tagged,
    wheel_origins,
)
from loadtest.server import ROOT, free_port
from varigate.contract.layout import BUILD_REPORT_FILENAME

QUICK_TIMEOUT_S, FULL_TIMEOUT_S = 20 * 60.0, 90 * 60.0
_DROP = (
    "VARIGATE_",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PIP_CACHE_DIR",
    "PIP_LOG",
    "HF_",
    "TRANSFORMERS_",
    "XDG_CACHE",
)


def clone(commit: str, dest: Path) -> tuple[str, str]:
    """A clone of ROOT checked out at ``commit``; (full sha, subject). Nothing untracked comes along."""
    sha = _git(ROOT, "rev-parse", commit)
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(dest)], check=True)
    _git(dest, "checkout", "--quiet", "--detach", sha)
    if (dest / ".venv").exists() or any(p.name != "README.md" for p in (dest / "model_repository").iterdir()):
        raise RuntimeError(f"the clone at {dest} is not clean: it has a .venv or built models")
    return sha, _git(dest, "log", "-1", "--format=%s", sha)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def fresh_env(tmp: Path, tag: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a fresh machine's user: this one's less what points at this checkout or its caches,
    plus empty caches in ``tmp`` and the tag."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(_DROP)}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not p.startswith(str(ROOT))]
    env.update(
        PATH=os.pathsep.join(path),
        PIP_CACHE_DIR=str(tmp / "pip-cache"),
        PIP_LOG=str(tmp / "pip.log"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        VARIGATE_CACHE_DIR=str(tmp / "cache" / "varigate"),
        HF_HOME=str(tmp / "cache" / "huggingface"),
    )
    env[TAG_ENV] = tag
    return env


def _read_lines(stream: IO[bytes], log: IO[str], timeline: Timeline, t0: float) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        t = time.monotonic() - t0
        log.write(f"{t:8.1f} {line}")
        log.flush()
        for name in timeline.feed(t, line):
            print(f"   {t:7.1f} s  {name}", file=sys.stderr, flush=True)


def stop_lines(lines: list[str], most: int = 12) -> list[str]:
    """What the run printed once it was told to stop (from run.sh's "stopping" line), else its last lines."""
    at = next((i for i, line in enumerate(lines) if "[run] stopping" in line), max(len(lines) - most, 0))
    return lines[at : at + most]


def _build_report(repo: Path) -> dict[str, str]:
    try:
        report = json.loads((repo / BUILD_REPORT_FILENAME).read_text()).get("minilm", {})
        return {v: str(e.get("status", "?")) for v, e in report.items()}
    except (OSError, json.JSONDecodeError):
        return {}


def measure(
    commit: str = "HEAD", quick: bool = False, timeout_s: float | None = None, keep: Path | None = None
) -> Measurement:
    """Clone, run, watch, stop; ``keep``: a directory for the clone and its log (else a temp dir, removed)."""
    with tempfile.TemporaryDirectory(prefix="varigate-first-run-") as scratch:
        tmp = keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        c0 = time.monotonic()
        sha, subject = clone(commit, tmp / "varigate")
        clone_s = time.monotonic() - c0
        tag, ports = uuid.uuid4().hex, [free_port() for _ in range(3)]
        args = [f"--{p}-port={n}" for p, n in zip(("http", "grpc", "metrics"), ports, strict=True)]
        timeline, ledger = Timeline(), CpuLedger()
        t0 = time.monotonic()
        proc = start_group(["bash", "scripts/run.sh", *args], tmp / "varigate", fresh_env(tmp, tag))
        assert proc.stdout is not None
        with (tmp / "run.log").open("w") as log:
            reader = threading.Thread(target=_read_lines, args=(proc.stdout, log, timeline, t0), daemon=True)
            reader.start()
            probe = Probe(f"127.0.0.1:{ports[1]}")  # gRPC
            try:
                limit = timeout_s or (QUICK_TIMEOUT_S if quick else FULL_TIMEOUT_S)
                repo = tmp / "varigate" / "model_repository"
                ended = watch(
                    proc, tag, timeline, probe, ledger, quick, t0, limit, lambda: _build_report(repo)
                )
                ledger.sample(tagged(tag))
            finally:
                stopped = stop_group(proc, tag)
                probe.close()
            reader.join(timeout=10)
        tail = stop_lines((tmp / "run.log").read_text(errors="replace").splitlines())
        pip_log = (tmp / "pip.log").read_text(errors="replace") if (tmp / "pip.log").exists() else ""
        return Measurement(
            sha,
            subject,
            quick,
            clone_s,
            ended,
            timeline,
            wheel_origins(pip_log),
            ledger.summary(),
            stopped,
            _build_report(repo),
            tail,
        )


def run(args: argparse.Namespace) -> str:
    quick = getattr(args, "first_run", "full") == "quick"
    keep = getattr(args, "first_run_keep", None)
    m = measure(getattr(args, "commit", "HEAD"), quick, getattr(args, "first_run_timeout", None), keep)
    return first_run_report.render(m)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.benchmarks.first_run", description=__doc__)
    p.add_argument("--commit", default="HEAD", help="what to clone (default: this checkout's HEAD)")
    p.add_argument("--quick", action="store_true", help="stop after the first MiniLM answer")
    p.add_argument("--timeout-min", type=float, default=None, help="give up after this long")
    p.add_argument("--keep", type=Path, default=None, help="keep the clone and its log in this directory")
    a = p.parse_args(argv)
    m = measure(a.commit, a.quick, a.timeout_min * 60 if a.timeout_min else None, a.keep)
    print(first_run_report.render(m))
    return 0 if first_run_report.clean(m) else 1


if __name__ == "__main__":
    raise SystemExit(main())
