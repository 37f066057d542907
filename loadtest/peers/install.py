"""Running a peer's installer script (``scripts/peers/*.sh``): idempotent, it prints the install directory
as the last line of its standard output."""

from __future__ import annotations

import subprocess
from pathlib import Path

from loadtest.server import ROOT


def run_installer(script: Path, timeout_s: float, error: type[Exception]) -> Path:
    """The directory ``script`` installed into; ``error`` (with the script's output) when it fails."""
    try:
        done = subprocess.run(
            ["bash", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as e:
        raise error(f"{script} did not finish in {timeout_s} s") from e
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise error(f"{script} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return Path(lines[-1])
