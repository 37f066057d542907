"""Live progress on stderr while a run is going: counts, in-flight, recent latency, throttled.

On a terminal one line is rewritten in place every ``interval_s``; otherwise (a log file, CI) a new line
is written at most every ``5 * interval_s``. Counters are updated by the engine on the event loop; the
display costs one short task wake-up per interval, nothing per request.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import TextIO

import numpy as np


class Progress:
    def __init__(
        self, total: int | None, *, interval_s: float = 1.0, stream: TextIO | None = None, label: str = ""
    ) -> None:
        self.total, self.label = total, label
        self.sent = self.done = self.errors = self.late = 0
        self.recent_ms: deque[float] = deque(maxlen=2000)
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval_s = interval_s if self._tty else 5 * interval_s
        self._task: asyncio.Task[None] | None = None
        self._t0 = self._last_t = 0.0
        self._last_done = 0

    @property
    def inflight(self) -> int:
        return self.sent - self.done

    def request_sent(self) -> None:
        self.sent += 1

    def request_done(self, latency_ms: float, error: bool, late: bool) -> None:
        self.done += 1
        self.errors += error
        self.late += late
        if not error:
            self.recent_ms.append(latency_ms)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._t0 = self._last_t = loop.time()
        self._task = loop.create_task(self._show_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._write(final=True)

    async def _show_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self._write()

    def line(self) -> str:
        now = asyncio.get_running_loop().time()
        rate = (self.done - self._last_done) / max(now - self._last_t, 1e-9)
        self._last_done, self._last_t = self.done, now
        elapsed = now - self._t0
        of = f"/{self.total}" if self.total else ""
        lat = ""
        if self.recent_ms:
            p50, p99 = np.percentile(np.fromiter(self.recent_ms, float), [50, 99])
            lat = f" p50 {p50:.1f} ms p99 {p99:.1f} ms"
        late = f" late {self.late}" if self.late else ""
        return (
            f"{self.label}{elapsed:6.1f}s sent {self.sent}{of} done {self.done} in-flight {self.inflight}"
            f" errors {self.errors}{late} {rate:.0f}/s{lat}"
        )

    def _write(self, final: bool = False) -> None:
        text = self.line()
        if self._tty:
            self._stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
