"""One real gateway for the fuzz tests (``tests/e2e/support.py``'s launcher over the tiny repository, with the
string model), its address space capped so that a bounds bug ends in a refused allocation (a 500 / INTERNAL
the tests report), never in the machine's memory, and the process facts the tests assert on."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import GatewayProcess, run_gateway

LIMIT_BYTES = 1 << 20  # --max-request-bytes: also gRPC's max receive message length
ADDRESS_SPACE_HEADROOM_BYTES = 3 << 30  # RLIMIT_AS = virtual size at start + this (at least 4 GB)
RSS_GROWTH_BOUND_BYTES = 300 << 20  # what a whole fuzz run may add to the gateway's resident memory
# Models of the tiny repository: variants, logical models, and names it does not have.
MODELS = ("tiny", "tiny.fp32", "tiny.int8", "clf", "clf.fp32", "text", "text.base")
UNKNOWN_MODELS = ("nope", "tiny.fp16", "Tiny")


def proc_status_bytes(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmSize``, ``VmHWM``) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(f"/proc/{pid}/status has no {field}")


def cap_address_space(pid: int) -> int:
    """Cap the process's virtual memory (``prlimit --as``) and return the cap."""
    cap = max(4_000_000_000, proc_status_bytes(pid, "VmSize") + ADDRESS_SPACE_HEADROOM_BYTES)
    resource.prlimit(pid, resource.RLIMIT_AS, (cap, cap))
    return cap


def assert_live(gw: GatewayProcess) -> None:
    """The process runs and still answers: live, and a real inference on the classifier."""
    assert gw.proc is not None and gw.proc.poll() is None, f"gateway exited:\n{gw.log()[-4000:]}"
    assert httpx.get(f"http://{gw.http}/v2/health/live", timeout=10).status_code == 200
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    r = httpx.post(f"http://{gw.http}/v2/models/clf.fp32/infer", json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["logits", "probs"]


@pytest.fixture(scope="session")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    for gw in run_gateway(
        tmp_path_factory.mktemp("fuzz"), ["--max-request-bytes", str(LIMIT_BYTES)], text=True
    ):
        cap_address_space(gw.pid)
        yield gw


@pytest.fixture
def rss_guard(fuzz_gateway: GatewayProcess) -> Iterator[GatewayProcess]:
    """The gateway, checked after the test: still live, and its RSS within ``RSS_GROWTH_BOUND_BYTES`` of
    before."""
    pid = fuzz_gateway.pid
    before, peak_before = proc_status_bytes(pid, "VmRSS"), proc_status_bytes(pid, "VmHWM")
    yield fuzz_gateway
    assert_live(fuzz_gateway)
    after, peak = proc_status_bytes(pid, "VmRSS"), proc_status_bytes(pid, "VmHWM")
    assert after - before < RSS_GROWTH_BOUND_BYTES, f"RSS grew from {before >> 20} to {after >> 20} MiB"
    assert peak <= max(peak_before, before + RSS_GROWTH_BOUND_BYTES), (
        f"RSS peaked at {peak >> 20} MiB during the test (was {before >> 20} MiB)"
    )
