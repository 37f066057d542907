"""What this CPU can do, as far as int8 kernels care."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_vnni() -> bool:
    """AVX-VNNI / AVX512-VNNI: int8 dot products accumulate in 32 bits, so u8s8 cannot saturate."""
    return any("vnni" in f for f in cpu_flags())
