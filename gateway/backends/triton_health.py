"""The wire to one Triton server, and what its answers mean (``gateway.backends.triton`` uses both).

``connect(protocol, address)`` makes the one ``Connection`` the fleet keeps per server: gRPC through
``tritonclient.grpc.aio`` (tensors in ``raw_input_contents`` / ``raw_output_contents``) or HTTP through
``tritonclient.http.aio`` with binary tensors. tritonclient is untyped (``Any`` to mypy); this module is
the typed boundary. ``probe`` is one health check: ServerReady, then the repository index (the models whose
state is READY), both inside one timeout. ``classify`` maps whatever an attempt raised to one of the
metrics' reasons, or ``None`` for anything that is not the remote's doing (re-raised by the caller).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp
import numpy as np
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http.aio as http_aio
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from gateway.backends.triton_breaker import Circuit, CircuitBreaker

log = logging.getLogger(__name__)
Protocol_ = Literal["grpc", "http"]
Tensors = dict[str, np.ndarray]

# Triton's gRPC status codes and HTTP statuses -> reason (tritonclient puts them in ``status()``)
_GRPC_REASONS = {
    "StatusCode.INVALID_ARGUMENT": "rejected",
    "StatusCode.OUT_OF_RANGE": "rejected",
    "StatusCode.NOT_FOUND": "not_ready",
    "StatusCode.DEADLINE_EXCEEDED": "timeout",
    "StatusCode.INTERNAL": "internal",
    "StatusCode.UNKNOWN": "internal",
    "StatusCode.UNIMPLEMENTED": "internal",
}
_HTTP_REASONS = {"400": "rejected", "404": "not_ready", "408": "timeout", "504": "timeout"}


class Connection(Protocol):
    address: str

    async def ready(self, timeout_s: float) -> bool: ...

    async def ready_models(self, timeout_s: float) -> frozenset[str]: ...

    async def infer(
        self, model: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str], timeout_s: float
    ) -> Tensors: ...

    async def close(self) -> None: ...


def _inputs(module: Any, feeds: Mapping[str, np.ndarray], binary: bool) -> list[Any]:
    made = []
    for name, array in feeds.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        if binary:
            tensor.set_data_from_numpy(array, binary_data=True)
        else:
            tensor.set_data_from_numpy(array)
        made.append(tensor)
    return made


class GrpcConnection:
    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = grpc_aio.InferenceServerClient(address)

    async def ready(self, timeout_s: float) -> bool:
        return bool(await self._client.is_server_ready(client_timeout=timeout_s))

    async def ready_models(self, timeout_s: float) -> frozenset[str]:
        index = await self._client.get_model_repository_index(client_timeout=timeout_s)
        return frozenset(str(m.name) for m in index.models if m.state == "READY")

    async def infer(
        self, model: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str], timeout_s: float
    ) -> Tensors:
        wanted = [grpc_aio.InferRequestedOutput(n) for n in outputs] or None
        result = await self._client.infer(
            model, _inputs(grpc_aio, feeds, binary=False), outputs=wanted, client_timeout=timeout_s
        )
        names = list(outputs) or [str(o.name) for o in result.get_response().outputs]
        return {n: result.as_numpy(n) for n in names}

    async def close(self) -> None:
        await self._client.close()


class HttpConnection:
    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = http_aio.InferenceServerClient(address)

    async def ready(self, timeout_s: float) -> bool:
        async with asyncio.timeout(timeout_s):
            return bool(await self._client.is_server_ready())

    async def ready_models(self, timeout_s: float) -> frozenset[str]:
        async with asyncio.timeout(timeout_s):
            index = await self._client.get_model_repository_index()
        return frozenset(str(m["name"]) for m in index if m.get("state") == "READY")

    async def infer(
        self, model: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str], timeout_s: float
    ) -> Tensors:
        wanted = [http_aio.InferRequestedOutput(n, binary_data=True) for n in outputs] or None
        async with asyncio.timeout(timeout_s):
            result = await self._client.infer(model, _inputs(http_aio, feeds, binary=True), outputs=wanted)
        names = list(outputs) or [str(o["name"]) for o in result.get_response()["outputs"]]
        return {n: result.as_numpy(n) for n in names}

    async def close(self) -> None:
        await self._client.close()


def connect(protocol: Protocol_, address: str) -> Connection:
    """A client for ``address`` ("host:port"); creating one does no I/O (it connects on first use)."""
    if protocol == "grpc":
        return GrpcConnection(address)
    if protocol == "http":
        return HttpConnection(address)
    raise ValueError(f"protocol {protocol!r} is not 'grpc' or 'http'")


@dataclass(frozen=True, slots=True)
class Health:
    up: bool  # ServerReady answered true
    ready: frozenset[str]  # models whose repository index state is READY
    error: str = ""  # why not up


async def probe(connection: Connection, timeout_s: float) -> Health:
    """One health check; a server that does not answer both calls within ``timeout_s`` is down."""
    try:
        async with asyncio.timeout(timeout_s):
            if not await connection.ready(timeout_s):
                return Health(False, frozenset(), "ServerReady answered false")
            models = await connection.ready_models(timeout_s)
    except Exception as e:  # any failure to answer means down, with the reason kept
        reason = classify(e)
        if reason is None:
            raise
        return Health(False, frozenset(), f"{reason}: {describe(e)}")
    return Health(True, models)


def classify(error: BaseException) -> str | None:
    """The metrics reason of a failed attempt (``REASONS`` of ``triton_metrics``), ``None`` if not remote."""
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, InferenceServerException):
        status = str(error.status() or "")
        if status.startswith("StatusCode."):
            return _GRPC_REASONS.get(status, "unavailable")  # UNAVAILABLE, CANCELLED, RESOURCE_EXHAUSTED...
        if status in _HTTP_REASONS:
            return _HTTP_REASONS[status]
        if status.startswith("5"):
            return "unavailable" if status == "503" else "internal"
        return "unavailable" if not status else "internal"
    if isinstance(error, aiohttp.ClientError | ConnectionError | OSError):
        return "unavailable"
    return None


def describe(error: BaseException) -> str:
    """A short message for an error (tritonclient's message, else the exception's text or type)."""
    if isinstance(error, InferenceServerException):
        text = f"{error.status() or ''} {error.message() or ''}".strip()
    else:
        text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True, slots=True)
class ServerState:
    """A snapshot of one server as the fleet sees it (``TritonFleet.states``)."""

    address: str
    up: bool  # the last ServerReady answered true
    circuit: str  # "closed" | "open" | "half_open"
    outstanding: int  # attempts in flight
    ready: tuple[str, ...]  # models READY in its repository index
    latency_s: tuple[tuple[str, float], ...]  # (model, EWMA of answered attempts' seconds)
    error: str  # the last failure seen (health or attempt), "" if none yet


class ServerLink:
    """One server as the fleet sees it: its connection, health, circuit, attempts in flight (``timeouts``:
    their caps, ``cut``: those fired early because a health check found the server down) and learned
    latency per model (EWMA seconds)."""

    def __init__(self, address: str, protocol: Protocol_, breaker: CircuitBreaker) -> None:
        self.address, self.protocol, self.breaker = address, protocol, breaker
        self.connection: Connection | None = None  # made by the first check, inside the event loop
        self.up = False
        self.ready: frozenset[str] = frozenset()
        self.outstanding = 0
        self.latency: dict[str, float] = {}
        self.learned_at: dict[str, float] = {}  # time.monotonic() of each model's last latency sample
        self.error = ""
        self.timeouts: set[asyncio.Timeout] = set()
        self.cut: set[asyncio.Timeout] = set()

    def serves(self, model: str) -> bool:
        return self.up and model in self.ready and self.breaker.state is not Circuit.OPEN

    def snapshot(self) -> ServerState:
        return ServerState(
            self.address,
            self.up,
            self.breaker.state.value,
            self.outstanding,
            tuple(sorted(self.ready)),
            tuple(sorted(self.latency.items())),
            self.error,
        )

    def learn(self, model: str, took_s: float, alpha: float) -> None:
        old = self.latency.get(model)
        self.latency[model] = took_s if old is None else old + alpha * (took_s - old)
        self.learned_at[model] = time.monotonic()

    def expected_s(self, model: str, fresh_s: float) -> float | None:
        """The latency EWMA for ``model`` if a sample came in the last ``fresh_s`` seconds, else ``None``."""
        at = self.learned_at.get(model)
        return self.latency[model] if at is not None and time.monotonic() - at <= fresh_s else None

    def standing(self, model: str) -> str:
        """Why this server does or does not take ``model`` now, in words."""
        if not self.up:
            return f"down ({self.error or 'never answered'})"
        if model not in self.ready:
            return f"up, {model!r} not READY (READY: {', '.join(sorted(self.ready)) or 'none'})"
        circuit = self.breaker.state
        trial = (
            " with its trial in flight" if circuit is Circuit.HALF_OPEN and not self.breaker.admits() else ""
        )
        return f"up, circuit {circuit.value}{trial}"

    async def send(
        self, model: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str], timeout_s: float
    ) -> Tensors:
        if self.connection is None:
            raise ConnectionError(f"Triton server {self.address} is not connected")
        return await self.connection.infer(model, feeds, outputs, timeout_s)

    async def disconnect(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            await connection.close()

    async def check(self, timeout_s: float, reconnect: bool = True) -> None:
        """One health check. Down: the attempts in flight are cut off now and, with ``reconnect``, the
        connection is made anew for the next check (a server restarted on the same port rejoins at once,
        not after gRPC's reconnect backoff)."""
        if self.connection is None:
            self.connection = connect(self.protocol, self.address)
        connection = self.connection
        try:
            health = await probe(connection, timeout_s)
        except Exception as e:  # the health loop must outlive any one probe; the reason is kept
            log.exception("health check of Triton server %s failed", self.address)
            health = Health(False, frozenset(), f"health check raised {describe(e)}")
        self.up, self.ready = health.up, health.ready
        if health.up:
            self.breaker.probe_ok()
            return
        self.error = health.error
        loop = asyncio.get_running_loop()
        for cap in list(self.timeouts):
            self.cut.add(cap)
            cap.reschedule(loop.time())
        if self.connection is connection:  # the next check connects anew
            self.connection = connect(self.protocol, self.address) if reconnect else None
            await asyncio.gather(connection.close(), return_exceptions=True)
