"""Raw onnxruntime in-process: the physical limit the gateway is compared with.

Same model file, same inputs as the load (the payloads' rows stacked into batches), same threads as the
gateway's backend (2 intra-op threads, one batch at a time). Each window runs one batch size back to back
inside ``loadtest.cpu.Monitor``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtest.cpu import Monitor, Window, process_cpu_s
from loadtest.payloads import Payloads

INTRA_OP_THREADS = 2


@dataclass(frozen=True, slots=True)
class RawWindow:
    batch: int
    throughput_per_s: float  # rows/s
    latencies_ms: np.ndarray  # per session.run
    window: Window
    cpu_cores: float  # this process's CPU over the window (onnxruntime's threads)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 50))

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99))

    @property
    def disturbed(self) -> bool:
        return self.window.disturbed()


class RawModel:
    def __init__(self, model_file: Path, payloads: Payloads, batches: tuple[int, ...]) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = INTRA_OP_THREADS
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
        names = list(payloads.requests[0])
        rows = {n: np.concatenate([r[n] for r in payloads.requests]) for n in names}
        self.feeds = {}
        for b in batches:
            if b > len(rows[names[0]]):
                raise ValueError(f"batch {b} needs more payload rows than {len(rows[names[0]])}")
            self.feeds[b] = {n: np.ascontiguousarray(a[:b]) for n, a in rows.items()}
        for feeds in self.feeds.values():  # warm up every shape
            for _ in range(2):
                self.session.run(None, feeds)

    def window(self, batch: int, seconds: float, min_runs: int = 3) -> RawWindow:
        feeds = self.feeds[batch]
        times: list[float] = []
        cpu0 = process_cpu_s((os.getpid(),))
        with Monitor() as mon:
            end = time.monotonic() + seconds
            while len(times) < min_runs or time.monotonic() < end:
                t0 = time.perf_counter()
                self.session.run(None, feeds)
                times.append(time.perf_counter() - t0)
        cores = (process_cpu_s((os.getpid(),)) - cpu0) / max(mon.window.seconds, 1e-9)
        return RawWindow(
            batch, batch * len(times) / sum(times), np.asarray(times) * 1000.0, mon.window, cores
        )
