"""What the first-run measurement asks the gateway each second (tritonclient over gRPC): ready yet, a real
MiniLM answer on the logical model, which variants the repository index lists READY, a request pinned to
each new one; and the watch loop that turns the answers into milestones and decides when to stop."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

import numpy as np

from loadtest.benchmarks.first_run_support import CpuLedger, Timeline, tagged
from loadtest.payloads import sentences
from loadtest.reply import grpc_variant
from varigate.contract.layout import model_name
from varigate.contract.variants import VARIANTS

LOGICAL = "minilm"
QUICK_VARIANTS = ("fp32", "int8")  # what scripts/run.sh builds before it serves
HEAVY = tuple(v for v in VARIANTS if v not in QUICK_VARIANTS)  # built in the background
SERVED_STATUSES = ("built", "up-to-date")
TICK_S, SAMPLE_EVERY = 1.0, 5  # probe each second, a CPU window every five
# gRPC's reconnect backoff (1 s, growing to 2 minutes) would delay seeing a gateway that starts listening
_CHANNEL = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
]
AFTER_BUILD_S = 60.0  # how long a variant the build wrote may take to be served after the build ends


class Probe:
    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        import tritonclient.grpc as tg

        self._tg, self.timeout_s = tg, timeout_s
        self.client = tg.InferenceServerClient(url, channel_args=_CHANNEL)
        request = sentences(1).requests[0]  # a real sentence, MiniLM's own token ids
        self.inputs = []
        for name, array in request.items():
            i = tg.InferInput(name, list(array.shape), "INT64")
            i.set_data_from_numpy(np.ascontiguousarray(array, dtype=np.int64))
            self.inputs.append(i)

    def ready(self) -> bool:
        try:
            return bool(self.client.is_server_ready(client_timeout=self.timeout_s))
        except Exception:  # noqa: BLE001 - not listening yet, or not ready: both mean "not yet"
            return False

    def infer(self, model: str) -> str | None:
        """The serving variant of a successful answer with a finite embedding; None on any failure."""
        try:
            result = self.client.infer(model, self.inputs, client_timeout=self.timeout_s)
        except Exception:  # noqa: BLE001 - not loaded yet, overloaded, restarting: "not yet"
            return None
        response = result.get_response()
        out = result.as_numpy(response.outputs[0].name)
        if out is None or out.shape[0] != 1 or not np.isfinite(out).all():
            return None
        return grpc_variant(response)

    def states(self) -> dict[str, str]:
        try:
            index = self.client.get_model_repository_index(as_json=True, client_timeout=self.timeout_s)
        except Exception:  # noqa: BLE001 - an index that cannot be read lists nothing this second
            return {}
        return {str(m.get("name")): str(m.get("state", "")) for m in index.get("models", [])}

    def close(self) -> None:
        self.client.close()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def probe_once(probe: Probe, timeline: Timeline, clock: Callable[[], float], quick: bool) -> None:
    """One second's questions; each answer marks a milestone (at the time it came) the first time."""
    if "gateway ready (health)" not in timeline.at:
        if not probe.ready():
            return
        timeline.mark("gateway ready (health)", clock())
    if "first inference" not in timeline.at:
        variant = probe.infer(LOGICAL)
        if variant:
            timeline.mark("first inference", clock(), f"logical model {LOGICAL!r} answered by {variant}")
        return
    if quick:
        return
    chosen = probe.infer(LOGICAL)
    if chosen:
        timeline.mark(f"chosen: {chosen}", clock())
    states = probe.states()
    for v in HEAVY:
        name = model_name(LOGICAL, v)
        if states.get(name) == "READY":
            timeline.mark(f"READY: {name}", clock())
        if f"READY: {name}" in timeline.at and f"served: {name}" not in timeline.at and probe.infer(name):
            timeline.mark(f"served: {name}", clock())


def finished(timeline: Timeline, t_s: float, report: Callable[[], dict[str, str]]) -> bool:
    """Full mode: the build has ended and every heavy variant it wrote is served (or it is long past)."""
    ends = [
        timeline.at[n] for n in ("background build finished", "background build stopped") if n in timeline.at
    ]
    if not ends:
        return False
    statuses = report()
    waiting = [
        v
        for v in HEAVY
        if statuses.get(v) in SERVED_STATUSES and f"served: {model_name(LOGICAL, v)}" not in timeline.at
    ]
    return not waiting or t_s - min(ends) > AFTER_BUILD_S


def watch(
    proc: subprocess.Popen[bytes],
    tag: str,
    timeline: Timeline,
    probe: Probe,
    ledger: CpuLedger,
    quick: bool,
    t0: float,
    limit_s: float,
    report: Callable[[], dict[str, str]],
) -> str:
    """Probe each second until done; why it ended."""
    tick = 0

    def clock() -> float:
        return time.monotonic() - t0

    while True:
        if tick % SAMPLE_EVERY == 0:
            ledger.sample(tagged(tag))
        tick += 1
        t_s = clock()
        if proc.poll() is not None:
            return f"scripts/run.sh exited by itself (status {proc.returncode})"
        if t_s > limit_s:
            return f"gave up after {limit_s:.0f} s"
        if not _alive(timeline.gateway_pid):
            timeline.mark("gateway process gone", t_s)
        probe_once(probe, timeline, clock, quick)
        if quick and "first inference" in timeline.at:
            return "first inference (quick mode)"
        if not quick and finished(timeline, clock(), report):
            return "background build ended and its variants are served"
        time.sleep(max(0.0, TICK_S - (clock() - t_s)))  # the next second's probe
