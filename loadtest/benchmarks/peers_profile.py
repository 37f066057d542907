"""Where a server's time goes under load: py-spy (PyPI) samples every thread of the process while a load
window runs, and the samples are summed per thread and per frame.

``profile(pid, window)`` runs ``py-spy record --format raw`` (collapsed stacks: ``thread;frame;frame N``)
for the window's length, without stopping the process (``--nonblocking``), and returns a ``Profile``: the
window's measurement, the share of samples per thread (onnxruntime's workers, the event loop, gRPC's
poller ...) and the event loop's heaviest frames, self and inclusive.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from loadtest.benchmarks.common import Measured

RATE_HZ = 100
_THREAD = re.compile(r"^thread \(\d+\): (?P<name>[^;]*)")
_WORKER_DIGITS = re.compile(r"_\d+$")


@dataclass(frozen=True, slots=True)
class Samples:
    samples: int  # all threads
    threads: dict[str, int]  # samples by thread name (numbered workers folded into one name)
    main_self: list[tuple[str, int]]  # the event loop's heaviest frames, own time
    main_inclusive: list[tuple[str, int]]  # ... and with what they call
    error: str = ""  # why no samples (py-spy missing or refused)


@dataclass(frozen=True, slots=True)
class Profile:
    label: str  # what load it sampled
    window: Measured
    stacks: Samples


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.is_file() else shutil.which("py-spy")


async def profile(
    label: str, pid: int, window: Awaitable[Measured], seconds: float = 8.0, top: int = 12
) -> Profile:
    """Sample ``pid`` for ``seconds`` while ``window`` (a load window of at least that long) runs."""
    tool = py_spy()
    with tempfile.TemporaryDirectory(prefix="varigate-pyspy-") as tmp:
        out = Path(tmp) / "stacks.txt"
        proc = None
        if tool is not None:
            proc = await asyncio.create_subprocess_exec(
                tool,
                "record",
                "-p",
                str(pid),
                "-d",
                str(int(seconds)),
                "-r",
                str(RATE_HZ),
                "--format",
                "raw",
                "-o",
                str(out),
                "--threads",
                "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        measured = await window
        error = "py-spy is not installed" if proc is None else ""
        if proc is not None:
            _, err = await proc.communicate()
            if proc.returncode != 0 or not out.is_file():
                error = f"py-spy exited with {proc.returncode}: {err.decode(errors='replace')[-300:]}"
        text = out.read_text() if out.is_file() else ""
    return Profile(label, measured, summarize(text, top, error))


def summarize(stacks: str, top: int = 12, error: str = "") -> Samples:
    """Samples per thread and the event loop's heaviest frames, from py-spy's raw (collapsed) output."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in stacks.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        match = _THREAD.match(frames[0])
        name = _WORKER_DIGITS.sub("_*", match.group("name")) if match else frames[0]
        total += n
        threads[name] += n
        if name == "MainThread" and len(frames) > 1:
            own[_frame(frames[-1])] += n
            for frame in {_frame(f) for f in frames[1:]}:
                inclusive[frame] += n
    return Samples(
        total,
        dict(threads.most_common()),
        own.most_common(top),
        _useful(inclusive, top),
        error,
    )


def _frame(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: lines differ between calls of one function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


def _useful(inclusive: Counter[str], top: int) -> list[tuple[str, int]]:
    """Inclusive frames below the event loop's own machinery (every sample passes through those)."""
    machinery = {"_run_module_as_main", "_run_code", "<module>", "serve_main", "run", "Runner.run",
                 "BaseEventLoop.run_until_complete", "BaseEventLoop.run_forever", "BaseEventLoop._run_once",
                 "Handle._run"}  # fmt: skip
    return [(f, n) for f, n in inclusive.most_common() if f.split(" (")[0] not in machinery][:top]
