"""The CPU a measurement ran on, and a disturbance monitor: hypervisor steal and other processes' CPU
during a measurement window.

This machine is shared; a window in which the hypervisor stole CPU, or other processes used a
noticeable share of it, is recorded as disturbed and dropped from the quoted medians.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

_HZ = os.sysconf("SC_CLK_TCK")
# the flags that change how int8 and bf16 kernels run (the machines vary: read them, never assume them)
KERNEL_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


def describe() -> str:
    """The CPU as /proc/cpuinfo names it, with the kernel-relevant flags it has and lacks."""
    model, flags = "unknown CPU", frozenset[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = frozenset(value.split())
    except OSError:
        pass
    has = ", ".join(f for f in KERNEL_FLAGS if f in flags) or "none of them"
    lacks = ", ".join(f for f in KERNEL_FLAGS if f not in flags) or "none"
    return f"{model} (flags read from /proc/cpuinfo at run time: has {has}; lacks {lacks})"


def _stat() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies over all CPUs."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = f[:7]
    steal = f[7] if len(f) > 7 else 0
    busy = user + nice + system + irq + softirq
    return busy, steal, sum(f[:8])


def _own_jiffies(pids: tuple[int, ...]) -> int:
    total = 0
    for pid in pids:
        try:
            parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])  # utime, stime (of all threads)
        except (OSError, IndexError, ValueError):
            pass
    return total


def process_cpu_s(pids: tuple[int, ...]) -> float:
    """CPU seconds (user + system, all threads) the processes have used so far."""
    return _own_jiffies(pids) / _HZ


@dataclass(frozen=True, slots=True)
class Window:
    seconds: float
    steal_fraction: float  # of all CPU time on the machine
    other_cores: float  # CPU used by processes not being measured, in cores

    def disturbed(self, max_steal: float = 0.05, max_other_cores: float = 0.25) -> bool:
        return self.steal_fraction > max_steal or self.other_cores > max_other_cores


class Monitor:
    """``with Monitor(pids) as m: ...`` then ``m.window``. ``pids``: the processes under measurement."""

    def __init__(self, pids: tuple[int, ...] = ()) -> None:
        self.pids = pids or (os.getpid(),)
        self.window = Window(0.0, 0.0, 0.0)

    def __enter__(self) -> Self:
        self._t0 = time.monotonic()
        self._s0 = _stat()
        self._o0 = _own_jiffies(self.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        dt = time.monotonic() - self._t0
        busy1, steal1, total1 = _stat()
        busy0, steal0, total0 = self._s0
        own = _own_jiffies(self.pids) - self._o0
        dtotal = max(total1 - total0, 1)
        other = max(0, (busy1 - busy0) - own) / _HZ / max(dt, 1e-9)
        self.window = Window(dt, (steal1 - steal0) / dtotal, other)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (``VmRSS`` in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"/proc/{pid}/status has no VmRSS line")


def open_fds(pid: int) -> int:
    """File descriptors the process holds open (entries of /proc/<pid>/fd)."""
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid``, read from /proc (children first, then theirs); zombies left out."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(int(entry.name))  # read once: the process may be gone by a second read
        if fields[:1] not in ([], ["Z"], ["X"]):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        frontier = [c for p in frontier for c in children.get(p, [])]
        found += frontier
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return _stat_fields(pid)[:1] not in ([], ["Z"], ["X"])


def wait_gone(pids: Sequence[int], timeout_s: float) -> bool:
    """Poll until none of ``pids`` is alive; False if some still are after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)  # polling interval
    return True


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, ...; empty when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []
