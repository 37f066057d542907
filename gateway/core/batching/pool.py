"""The compute pool: the process's one budget of cores, shared by every batch of every variant of every
model (DESIGN.md, "One compute pool").

The pool has ``slots`` (the layout's executor workers: one per core in the ``adaptive`` and ``split``
layouts, one in ``wide``). A batch runs only on a ``Grant``. In the adaptive layout a batch that finds the
pool idle with nothing waiting behind it takes every slot and runs *wide* (its variant's session with one
intra-op thread per core); any other batch takes one slot and runs *narrow* (the single-threaded session).
In a fixed layout every batch takes one slot and runs as the layout says (``FIXED``). So the threads of the
batches running at once never exceed the cores, and the mode a batch runs in is known before it starts:
the latency model predicts and learns per mode.

Pinned batchers wait for a grant (``take``, first come first served); the late-binding schedulers take one
only when the pool can give it at once (``try_take``) and are woken (``listen``) whenever slots come free, so
a scheduler never holds a batch it has not yet bound to a variant. Waiters are served before listeners.
Times are ``time.monotonic_ns()``.

Remote slots (the Triton fleet, ``gateway.backends.triton``): ``remote`` says how many batches the fleet's
healthy servers take at once (it changes with their health). A ``REMOTE`` grant holds one of them, never a
local slot: a batch sent to a Triton server costs this process a request in flight, not a core. The
late-binding schedulers take remote grants only when one is free (``try_take_remote``); a pinned batcher of
a variant placed only remotely takes one at once (``take_remote``), bounded by its own instances, so
``remote_free`` may read 0 while such batches run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Mode = Literal["wide", "narrow", "fixed", "remote"]
WIDE: Mode = "wide"
NARROW: Mode = "narrow"
FIXED: Mode = "fixed"
REMOTE: Mode = "remote"


@dataclass(eq=False, slots=True)
class Grant:
    slots: int  # taken from the pool
    mode: Mode
    started_ns: int  # when the grant was given: the batch computes from here
    predicted_ns: int = 0  # the batch's predicted compute time, where a scheduler predicted one

    @property
    def wide(self) -> bool:
        return self.mode == WIDE


class ComputePool:
    def __init__(self, slots: int, adaptive: bool = False, remote: Callable[[], int] | None = None) -> None:
        if slots < 1:
            raise ValueError(f"a compute pool needs at least one slot, got {slots}")
        self.slots, self.adaptive = slots, adaptive and slots > 1
        self._free = slots
        self._remote_capacity = remote or (lambda: 0)
        self._remote_busy = 0
        self._waiters: deque[tuple[asyncio.Future[Grant], bool, int]] = deque()  # (future, alone, predicted)
        self._listeners: list[Callable[[], None]] = []
        self._running: set[Grant] = set()
        self.runs = {
            WIDE: 0,
            NARROW: 0,
            FIXED: 0,
            REMOTE: 0,
        }  # batches granted per mode (tests and metrics read it)

    @property
    def free(self) -> int:
        return self._free

    def can_take(self) -> bool:
        """Whether ``try_take`` would give a grant now."""
        return self._free >= 1 and not self._waiters

    def idle(self) -> bool:
        return self._free == self.slots and not self._waiters

    def running(self, remote: bool = False) -> tuple[Grant, ...]:
        """The grants running on local slots, or (``remote``) on remote ones."""
        return tuple(g for g in self._running if (g.mode == REMOTE) == remote)

    @property
    def remote_free(self) -> int:
        return max(0, self._remote_capacity() - self._remote_busy)

    def can_take_remote(self) -> bool:
        return self.remote_free >= 1

    def try_take_remote(self, predicted_ns: int = 0) -> Grant | None:
        """A remote grant now, or ``None`` when every remote slot is taken (or there are none)."""
        return self.take_remote(predicted_ns) if self.can_take_remote() else None

    def take_remote(self, predicted_ns: int = 0) -> Grant:
        """A remote grant at once, free slot or not (a pinned batcher's: its instances bound it)."""
        self._remote_busy += 1
        self.runs[REMOTE] += 1
        grant = Grant(0, REMOTE, time.monotonic_ns(), predicted_ns)
        self._running.add(grant)
        return grant

    def mode_for(self, alone: bool) -> Mode:
        """The mode a batch granted now gets: wide only if the pool is idle and ``alone`` (nothing waits
        behind it)."""
        if not self.adaptive:
            return FIXED
        return WIDE if alone and self.idle() else NARROW

    def try_take(self, alone: bool = False, predicted_ns: int = 0) -> Grant | None:
        """A grant now, or ``None`` when no slot is free or pinned batchers wait for one."""
        if self._free < 1 or self._waiters:
            return None
        return self._give(self.mode_for(alone), predicted_ns)

    async def take(self, alone: bool = False, predicted_ns: int = 0) -> Grant:
        """Wait for a grant (first come, first served)."""
        grant = self.try_take(alone, predicted_ns)
        if grant is not None:
            return grant
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, alone, predicted_ns))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.give_back(future.result())  # granted as it was cancelled
            else:
                self._waiters = deque(w for w in self._waiters if w[0] is not future)
            raise

    def give_back(self, grant: Grant) -> None:
        if grant not in self._running:
            return
        self._running.discard(grant)
        if grant.mode == REMOTE:
            self._remote_busy -= 1
        self._free += grant.slots
        while self._waiters and self._free >= 1:
            future, alone, predicted = self._waiters.popleft()
            if future.done():
                continue
            wide = self.adaptive and alone and self._free == self.slots and not self._waiters
            future.set_result(self._give(WIDE if wide else (NARROW if self.adaptive else FIXED), predicted))
        for wake in self._listeners:
            wake()

    def listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` whenever slots come free; returns the function that stops it."""
        self._listeners.append(wake)
        return lambda: self._listeners.remove(wake) if wake in self._listeners else None

    def _give(self, mode: Mode, predicted_ns: int) -> Grant:
        taken = self.slots if mode == WIDE else 1
        self._free -= taken
        self.runs[mode] += 1
        grant = Grant(taken, mode, time.monotonic_ns(), predicted_ns)
        self._running.add(grant)
        return grant
