"""The cores of the compute pool, handed to the batches that run on them (``adaptive`` layout).

A batch that finds every core free and nobody waiting takes them all and runs on its variant's wide
session (one intra-op thread per core); any other batch takes one core and runs on the variant's
single-threaded session, waiting for a core if none is free. So the threads of the batches running at once
never outnumber the cores, a lone batch gets the whole machine, and under load the batches run side by
side, one per core. Called on the executor's worker threads (blocking is theirs to do).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Cores:
    def __init__(self, cores: int) -> None:
        self.cores = cores
        self._free = cores
        self._waiting = 0
        self._ready = threading.Condition()
        self.wide_runs = 0  # batches that had the pool to themselves (tests and metrics read these)
        self.narrow_runs = 0

    @contextmanager
    def hold(self) -> Iterator[bool]:
        """Hold cores while the block runs; yields True when they are all of them (run wide)."""
        with self._ready:
            wide = self._free == self.cores and self._waiting == 0
            taken = self.cores if wide else 1
            if not wide:
                self._waiting += 1
                while self._free < 1:
                    self._ready.wait()
                self._waiting -= 1
            self._free -= taken
            if wide:
                self.wide_runs += 1
            else:
                self.narrow_runs += 1
        try:
            yield wide
        finally:
            with self._ready:
                self._free += taken
                self._ready.notify_all()
