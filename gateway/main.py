"""Wiring: build the service from ``Settings`` and serve it over HTTP, gRPC and /metrics in one asyncio
loop.

Lifecycle: the service starts (models load, batchers start) before any listener opens. On SIGTERM or
SIGINT the gateway stops accepting (gRPC health NOT_SERVING, the service reports not ready, listeners
close), finishes every request it already accepted (up to ``exit_timeout_secs``), closes the service and
returns 0. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvicorn
from grpc_health.v1.health import aio as health_aio

from gateway.backends.base import DEFAULT_BACKEND
from gateway.core.service import Service
from gateway.metrics import Metrics
from gateway.protocol import grpc as grpc_protocol
from gateway.protocol.codec import RequestLimits
from gateway.protocol.http import HttpOptions, create_app
from gateway.protocol.restricted import GRPC_HEADER_PREFIX, Restrictions
from gateway.settings import Settings

log = logging.getLogger("gateway")


def build_service(settings: Settings, metrics: Metrics) -> Service:
    """The core service over the repository, reporting to ``metrics``; not started."""
    from gateway.policies import build_policy
    from gateway.repository import create_service

    options: dict[str, Any] = {}
    if settings.backend == DEFAULT_BACKEND:
        options = {
            "intra_op_threads": settings.ort_intra_op_threads,
            "inter_op_threads": settings.ort_inter_op_threads,
            "executor_workers": settings.executor_workers or None,
        }
    policy, drift = build_policy(settings, metrics.policy)
    return create_service(
        settings.repository,
        control_mode=settings.model_control_mode,
        poll_interval_s=settings.repository_poll_secs,
        startup_models=settings.load_model,
        backend=settings.backend,
        backend_options=options,
        observer=metrics,
        strict_readiness=settings.strict_readiness,
        policy=policy,
        drift=drift,
    )


def request_limits(settings: Settings) -> RequestLimits:
    return RequestLimits(
        max_elements=settings.max_request_elements,
        max_dims=settings.max_tensor_dims,
        max_inputs=settings.max_request_inputs,
    )


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the gateway owns SIGTERM/SIGINT (uvicorn would re-raise
    the signal after shutting down, killing the process instead of exiting 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a response's header and body writes meet Nagle and delayed ACKs (+40 ms per request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn(app: Any, settings: Settings) -> _Uvicorn:
    config = uvicorn.Config(
        app,
        lifespan="off",  # the gateway starts and stops the service around all servers
        log_config=None,  # the gateway's logging configuration, not uvicorn's
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=max(1, math.ceil(settings.exit_timeout_secs)),
        http="httptools",
        ws="none",
    )
    return _Uvicorn(config)


@dataclass
class Gateway:
    """A running gateway; ``http_port`` / ``grpc_port`` / ``metrics_port`` are the bound ports."""

    settings: Settings
    service: Service
    metrics: Metrics
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    _servers: list[tuple[_Uvicorn, asyncio.Task[None]]] = field(default_factory=list)
    _grpc: grpc.aio.Server | None = None
    _health: health_aio.HealthServicer | None = None

    async def start(self) -> None:
        s = self.settings
        await self.service.start()
        if s.allow_grpc:
            rules = Restrictions.parse(
                s.grpc_restricted_protocol, header_prefix=GRPC_HEADER_PREFIX, noun="protocol"
            )
            self._grpc, self._health = grpc_protocol.create_server(
                self.service,
                restrictions=rules,
                max_message_bytes=s.max_request_bytes,
                request_limits=request_limits(s),
            )
            self.grpc_port = self._grpc.add_insecure_port(f"{s.grpc_host}:{s.grpc_port}")
            await self._grpc.start()
            await grpc_protocol.set_serving(self._health, True)
        if s.allow_http:
            options = HttpOptions(
                s.max_request_bytes, Restrictions.parse(s.http_restricted_api), request_limits(s)
            )
            self.http_port = self._serve(create_app(self.service, options), s.http_host, s.http_port)
        if s.allow_metrics:
            self.metrics_port = self._serve(self.metrics.asgi_app(), s.metrics_host, s.metrics_port)
        log.info(
            "varigate serving %s: HTTP %s, gRPC %s, metrics %s",
            s.repository,
            self.http_port or "off",
            self.grpc_port or "off",
            self.metrics_port or "off",
        )

    def _serve(self, app: Any, host: str, port: int) -> int:
        sock = _listen(host, port)
        server = _uvicorn(app, self.settings)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        self._servers.append((server, task))
        return int(sock.getsockname()[1])

    async def stop(self, force: asyncio.Event | None = None) -> None:
        """Stop accepting, finish what was accepted (up to the exit timeout), close. ``force`` set: stop
        waiting."""
        s = self.settings
        if self._health is not None:
            await grpc_protocol.set_serving(self._health, False)
        for server, _ in self._servers:
            server.should_exit = True  # uvicorn closes its listener, then waits for open requests
        drain = asyncio.create_task(self.service.drain(timeout_s=s.exit_timeout_secs))
        waits: list[Any] = [drain, *(task for _, task in self._servers)]
        if self._grpc is not None:
            waits.append(asyncio.create_task(self._grpc.stop(grace=s.exit_timeout_secs)))
        everything = asyncio.gather(*waits, return_exceptions=True)
        if force is not None:
            forced = asyncio.create_task(force.wait())
            first: list[asyncio.Future[Any]] = [everything, forced]
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            if not everything.done():
                log.warning("second signal: not waiting for accepted requests any longer")
                for server, _ in self._servers:
                    server.force_exit = True
                if self._grpc is not None:
                    await self._grpc.stop(grace=0)
                drain.cancel()
        abandoned = False
        for r in await everything:
            if isinstance(r, (TimeoutError, asyncio.CancelledError)):
                abandoned = True
            elif isinstance(r, BaseException):
                log.error("error while stopping: %r", r)
        try:
            await self.service.close(timeout_s=1.0)  # drained already: this only unloads
        except TimeoutError:
            abandoned = True
        if abandoned:
            log.warning(
                "stopped before every accepted request finished (exit timeout %.1f s)", s.exit_timeout_secs
            )


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    loop = asyncio.get_running_loop()
    stop, force = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (force if stop.is_set() else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    metrics = Metrics()
    gateway = Gateway(settings, build_service(settings, metrics), metrics)
    try:
        await gateway.start()
        await stop.wait()
        log.info("signal received: draining (up to %.0f s)", settings.exit_timeout_secs)
    finally:
        await gateway.stop(force)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")
    return 0


def run(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    try:
        return asyncio.run(serve(settings))
    except (OSError, ValueError, RuntimeError) as e:  # a port taken, a repository that cannot be read
        log.critical("varigate serve: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        return 1
