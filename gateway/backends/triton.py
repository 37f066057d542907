"""A fleet of remote Triton servers as one place where batches run (DESIGN.md's scale-out).

``TritonFleet(FleetConfig.parse("h:p,h:p"))`` keeps one connection per server (``triton_health``: gRPC or
HTTP with binary tensors) and, in a background task, every ``health_interval_s``: ServerReady and the
repository index of each server (a server that does not answer in ``health_timeout_s`` is down; its
connection is made anew, so a server restarted on the same port rejoins). A variant goes only to servers
whose index lists it READY and whose circuit (``triton_breaker``) is not open.

``infer`` sends a batch to the ready server with the fewest attempts outstanding (ties: the lower learned
latency in 1.5x bands, then round-robin; an estimate without a sample in 5 s ranks as unknown, first, so a
server that once looked slow is tried again). A failed attempt (unavailable, timed out, INTERNAL, the model
unknown there) is retried once on another ready server while the deadline allows; a rejection (the server
refused the input: INVALID_ARGUMENT / HTTP 400) is not retried and not held against the server.

The per-attempt timeout. ``deadline_ns`` is the batch's SLO deadline: soft (a late answer is still
wanted), so it never fails a batch by itself; it decides how long the first attempt may take before the
batch is sent elsewhere. With another server able to take a retry and ``left`` seconds to the deadline,
the retry's reserve is ``max(min_attempt_s, 2 x its latency EWMA for the model)`` (``min_attempt_s`` when
it has none), and the first attempt gets ``left - reserve`` when that is at least ``max(min_attempt_s, its
own EWMA)``. Otherwise (no deadline, no other server, or no time for two) an attempt gets
``attempt_timeout_s``, as does the retry. In-flight attempts on a server that the health check finds
down are cut off at once (their timeout fires early), so a hung server costs about one health round.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
from prometheus_client import CollectorRegistry

from gateway.backends.triton_breaker import Circuit, CircuitBreaker
from gateway.backends.triton_config import (
    FleetConfig,
    FleetError,
    NoServerReady,
    RemoteFailed,
    RemoteRejected,
)
from gateway.backends.triton_health import ServerLink, ServerState, classify, describe
from gateway.backends.triton_metrics import FleetMetrics

EWMA_ALPHA = 0.3
LATENCY_BAND = math.log(1.5)  # latencies within one band tie
LATENCY_FRESH_S = 5.0  # an older estimate ranks as unknown: a server is tried again, not shunned forever


class _AttemptFailed(Exception):
    pass


class TritonFleet:
    def __init__(self, config: FleetConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.metrics = FleetMetrics(registry or CollectorRegistry(), config.servers)
        self._servers = [
            ServerLink(a, config.protocol, CircuitBreaker(config.breaker_failures, config.breaker_open_s))
            for a in config.servers
        ]
        self._by_address = {s.address: s for s in self._servers}
        for server in self._servers:
            self.metrics.watch(server)
        self._turn = 0  # round-robin position for ties
        self._task: asyncio.Task[None] | None = None
        self._kicks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        """One health round of every server, then the background health task."""
        if self._closed:
            raise FleetError("the Triton fleet is closed")
        await self._health_round()
        self._task = asyncio.create_task(self._health_loop(), name="triton-fleet-health")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._task, *self._kicks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.disconnect() for s in self._servers), return_exceptions=True)

    def ready_for(self, model: str) -> tuple[str, ...]:
        return tuple(s.address for s in self._servers if s.serves(model))

    def free_slots(self, model: str) -> int:
        slots = self.config.slots_per_server
        return sum(max(0, slots - s.outstanding) for s in self._servers if s.serves(model))

    def capacity(self) -> int:
        """Batches the fleet takes at once: ``slots_per_server`` for each server up with its circuit not
        open (cheap: the scheduler reads it at every decision)."""
        usable = sum(1 for s in self._servers if s.up and s.breaker.state is not Circuit.OPEN)
        return self.config.slots_per_server * usable

    def states(self) -> tuple[ServerState, ...]:
        return tuple(s.snapshot() for s in self._servers)

    def latency_s(self, server: str, model: str) -> float | None:
        if server not in self._by_address:
            raise ValueError(f"{server!r} is not a server of this fleet ({', '.join(self.config.servers)})")
        return self._by_address[server].latency.get(model)

    async def infer(
        self,
        model: str,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        deadline_ns: int = 0,
    ) -> dict[str, np.ndarray]:
        """Run one batch on the fleet; ``deadline_ns`` is absolute ``time.monotonic_ns()`` (0: none)."""
        first = self._pick(model, ())
        if first is None:
            raise NoServerReady(self._no_server(model))
        tried: list[str] = []
        try:
            return await self._attempt(first, model, feeds, outputs, self._timeout(first, model, deadline_ns))
        except _AttemptFailed as e:
            tried.append(f"{first.address}: {e}")
        second = self._pick(model, (first,))
        if second is None:
            raise RemoteFailed(f"model {model!r}: {tried[0]}; no other server has it ready")
        self.metrics.retries.labels(first.address).inc()
        try:
            return await self._attempt(second, model, feeds, outputs, self.config.attempt_timeout_s)
        except _AttemptFailed as e:
            tried.append(f"{second.address}: {e}")
        raise RemoteFailed(f"model {model!r}: every attempt failed: {'; '.join(tried)}")

    # -- choosing and timing attempts

    def _candidates(self, model: str, exclude: Sequence[ServerLink]) -> list[ServerLink]:
        found = [s for s in self._servers if s.serves(model) and s.breaker.admits() and s not in exclude]
        n = len(self._servers)

        def rank(s: ServerLink) -> tuple[int, int, int]:
            latency = s.expected_s(model, LATENCY_FRESH_S)
            band = math.floor(math.log(latency) / LATENCY_BAND) if latency else -(10**6)
            return s.outstanding, band, (self._servers.index(s) - self._turn) % n

        return sorted(found, key=rank)

    def _pick(self, model: str, exclude: Sequence[ServerLink]) -> ServerLink | None:
        found = self._candidates(model, exclude)
        if not found:
            return None
        self._turn = (self._servers.index(found[0]) + 1) % len(self._servers)
        return found[0]

    @staticmethod
    def _left_s(deadline_ns: int) -> float | None:
        return None if not deadline_ns else (deadline_ns - time.monotonic_ns()) / 1e9

    def _timeout(self, server: ServerLink, model: str, deadline_ns: int) -> float:
        left = self._left_s(deadline_ns)
        floor = self.config.min_attempt_s
        others = self._candidates(model, (server,))
        if left is not None and others:
            reserve = max(floor, 2 * others[0].latency.get(model, floor / 2))
            if left - reserve >= max(floor, server.latency.get(model, 0.0)):
                return min(left - reserve, self.config.attempt_timeout_s)
        return self.config.attempt_timeout_s

    async def _attempt(
        self,
        server: ServerLink,
        model: str,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        timeout_s: float,
    ) -> dict[str, np.ndarray]:
        address, metrics = server.address, self.metrics
        server.breaker.begin()
        server.outstanding += 1
        metrics.requests.labels(address, model).inc()
        cap = asyncio.timeout(timeout_s)
        started = time.perf_counter()
        try:
            async with cap:
                server.timeouts.add(cap)
                try:
                    result = await server.send(model, feeds, outputs, timeout_s)
                finally:
                    server.timeouts.discard(cap)
        except asyncio.CancelledError:
            server.breaker.abandon()
            raise
        except Exception as e:
            reason = classify(e)
            if reason is None:
                server.breaker.abandon()
                raise
            why = f"{reason}: {describe(e)}"
            if cap in server.cut:
                reason, why = "unavailable", "unavailable: health check found the server down mid-attempt"
            elif reason == "timeout":
                why = f"timeout: no answer in {timeout_s:.3f} s"
            metrics.errors.labels(address, reason).inc()
            if reason == "rejected":
                server.breaker.success()  # it answered: a refusal is no fault of the server
                raise RemoteRejected(f"model {model!r} on {address}: {describe(e)}") from None
            if reason == "not_ready":
                server.ready = server.ready - {model}  # until the next health round says otherwise
                server.breaker.abandon()
            else:
                server.breaker.failure()
                self._kick(server)
            server.error = why
            raise _AttemptFailed(why) from None
        else:
            server.breaker.success()
            took = time.perf_counter() - started
            server.learn(model, took, EWMA_ALPHA)
            return result
        finally:
            server.cut.discard(cap)
            server.outstanding -= 1
            metrics.duration.labels(address).observe(time.perf_counter() - started)

    # -- health

    def _no_server(self, model: str) -> str:
        servers = "; ".join(f"{s.address}: {s.standing(model)}" for s in self._servers)
        return f"no Triton server has model {model!r} ready: {servers}"

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            await self._health_round()

    async def _health_round(self) -> None:
        await asyncio.gather(*(self._check(s) for s in self._servers))

    def _kick(self, server: ServerLink) -> None:
        """An attempt failed: check that server now instead of at the next round."""
        if self._closed or not server.up:
            return
        task = asyncio.create_task(self._check(server))
        self._kicks.add(task)
        task.add_done_callback(self._kicks.discard)

    async def _check(self, server: ServerLink) -> None:
        await server.check(self.config.health_timeout_s, reconnect=not self._closed)
        self.metrics.up.labels(server.address).set(1 if server.up else 0)


class TritonRunner:
    """The core's ``Runner`` for one remote variant: its batches go to ``fleet``; ``close`` does nothing
    (the fleet owns the connections)."""

    def __init__(self, fleet: TritonFleet, model: str, outputs: Sequence[str]) -> None:
        self.fleet, self.model, self.outputs = fleet, model, tuple(outputs)

    async def infer(
        self, feeds: Mapping[str, np.ndarray], wide: bool = False, deadline_ns: int = 0
    ) -> dict[str, np.ndarray]:
        return await self.fleet.infer(self.model, feeds, self.outputs, deadline_ns=deadline_ns)

    @property
    def calibration(self) -> Mapping[str, Mapping[int, float]]:
        return {}

    def close(self) -> None:
        pass


__all__ = [
    "FleetConfig",
    "FleetError",
    "NoServerReady",
    "RemoteFailed",
    "RemoteRejected",
    "ServerState",
    "TritonFleet",
    "TritonRunner",
]
