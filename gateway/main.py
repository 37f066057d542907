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
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1.health import aio as health_aio

from gateway.backends.base import DEFAULT_BACKEND
from gateway.core.models.health import HealthConfig
from gateway.core.service import Service
from gateway.metrics import Metrics
from gateway.protocol import grpc as grpc_protocol
from gateway.protocol.codec import RequestLimits
from gateway.protocol.grpc_limits import GrpcLimits
from gateway.protocol.http import HttpOptions, create_app
from gateway.protocol.http_server import GatewayUvicorn, HttpLimits, listen
from gateway.protocol.http_server import server as http_server
from gateway.protocol.restricted import GRPC_HEADER_PREFIX, Restrictions
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.backends.placement import Scaleout

log = logging.getLogger("gateway")
_GRPC_QUIET_S = 0.2  # at shutdown: no call for this long, and the gRPC server stops


def build_service(
    settings: Settings, metrics: Metrics, *, backend_options: dict[str, Any] | None = None
) -> Service:
    """The core service over the repository, reporting to ``metrics``; not started. ``backend_options``
    replace the ones ``settings`` give ``settings.backend`` (objects an embedder passes, such as a test's
    gate)."""
    from gateway.policies import build_policy
    from gateway.repository import QueueDefaults, create_service

    options: dict[str, Any] = {}
    if settings.backend == DEFAULT_BACKEND:
        spinning = {"auto": None, "on": True, "off": False}[settings.ort_allow_spinning]
        options = {
            "layout": settings.layout,
            "intra_op_threads": settings.ort_intra_op_threads,
            "inter_op_threads": settings.ort_inter_op_threads,
            "executor_workers": settings.executor_workers or None,
            "allow_spinning": spinning,
        }
    if backend_options is not None:
        options = backend_options
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
        queue_defaults=QueueDefaults(
            settings.default_max_queue_size, round(settings.default_queue_timeout_ms * 1000)
        ),
        health=HealthConfig(settings.circuit_breaker_failures, settings.circuit_breaker_cooldown_secs),
        scaleout=scaleout(settings, metrics),
    )


def scaleout(settings: Settings, metrics: Metrics) -> Scaleout | None:
    """The Triton fleet and where each variant runs, when ``--triton-servers`` names servers."""
    fleet = settings.fleet_config()
    if fleet is None:
        return None
    from gateway.backends.placement import Scaleout
    from gateway.settings_fleet import parse_variant_placement

    overrides = parse_variant_placement(settings.variant_placement)
    return Scaleout(fleet, settings.default_placement, overrides, metrics.registry)


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(
        max_connections=settings.http_max_connections,
        keep_alive_s=settings.http_keep_alive_secs,
        header_timeout_s=settings.http_header_timeout_secs,
        body_timeout_s=settings.http_body_timeout_secs,
        max_header_bytes=settings.http_max_header_bytes,
        backlog=settings.listen_backlog,
    )


def request_limits(settings: Settings) -> RequestLimits:
    return RequestLimits(
        max_elements=settings.max_request_elements,
        max_dims=settings.max_tensor_dims,
        max_inputs=settings.max_request_inputs,
    )


def grpc_limits(settings: Settings) -> GrpcLimits:
    return GrpcLimits(
        max_message_bytes=settings.max_request_bytes,
        max_connections=settings.grpc_max_connections,
        max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
        max_stream_inflight=settings.grpc_max_stream_inflight,
        keepalive_s=settings.grpc_keepalive_secs,
        keepalive_timeout_s=settings.grpc_keepalive_timeout_secs,
        max_connection_idle_s=settings.grpc_max_connection_idle_secs,
        max_connection_age_s=settings.grpc_max_connection_age_secs,
        max_connection_age_grace_s=settings.exit_timeout_secs,
        handshake_timeout_s=settings.grpc_handshake_timeout_secs,
    )


def raise_fd_limit(settings: Settings) -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as Go does at start), and warn when even that is
    below what the connection limits allow: accept() would then fail with EMFILE before they refuse."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    needed = settings.http_max_connections + settings.grpc_max_connections + 256  # models, pipes, metrics
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open-file limit %d is below http_max_connections + grpc_max_connections + 256 = %d; "
            "lower those limits or raise the limit (ulimit -n)",
            soft,
            needed,
        )


@dataclass
class Gateway:
    """A running gateway; ``http_port`` / ``grpc_port`` / ``metrics_port`` are the bound ports."""

    settings: Settings
    service: Service
    metrics: Metrics
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    _servers: list[tuple[GatewayUvicorn, asyncio.Task[None]]] = field(default_factory=list)
    _grpc: grpc.aio.Server | None = None
    _health: health_aio.HealthServicer | None = None
    _calls: grpc_protocol.CallClock = field(default_factory=grpc_protocol.CallClock)

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
                limits=grpc_limits(s),
                request_limits=request_limits(s),
                clock=self._calls,
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
            "varigate serving %s: HTTP %s, gRPC %s, metrics %s; event loop %s",
            s.repository,
            self.http_port or "off",
            self.grpc_port or "off",
            self.metrics_port or "off",
            type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )

    def _serve(self, app: Any, host: str, port: int) -> int:
        s = self.settings
        limits = http_limits(s)
        sock = listen(host, port, limits.backlog)
        server = http_server(app, limits, log_level=s.log_level, exit_timeout_s=s.exit_timeout_secs)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        self._servers.append((server, task))
        return int(sock.getsockname()[1])

    async def _stop_grpc(self, drain: asyncio.Task[None], grace_s: float) -> None:
        """Stop the gRPC server once the accepted requests have finished and calls have stopped arriving
        (none for ``_GRPC_QUIET_S``), within ``grace_s``. Until then it keeps taking calls off the wire and
        the service refuses them (UNAVAILABLE "shutting down"); grpc's own shutdown would instead cancel
        (CANCELLED) every call that reached the server but was not yet handed to the application, which
        on a busy machine includes calls sent well before the signal."""
        assert self._grpc is not None
        deadline = time.monotonic() + grace_s
        await asyncio.wait([drain], timeout=grace_s)
        # a timestamp the interceptor sets, polled: an Event per call would cost every call for this
        while time.monotonic() < deadline and time.monotonic() - self._calls.last_s < _GRPC_QUIET_S:  # noqa: ASYNC110
            await asyncio.sleep(_GRPC_QUIET_S / 4)
        await self._grpc.stop(grace=max(0.0, deadline - time.monotonic()))

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
            waits.append(asyncio.create_task(self._stop_grpc(drain, s.exit_timeout_secs)))
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
    raise_fd_limit(settings)
    metrics = Metrics(triton_compatible=settings.metrics_triton_compatible)
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


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What ``asyncio.Runner`` makes the loop with for ``Settings.event_loop`` (None: asyncio's own).
    'auto' takes uvloop when it can be imported; 'uvloop' without it is a RuntimeError."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise RuntimeError("event loop 'uvloop' asked for, but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def run(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
            return runner.run(serve(settings))
    except (OSError, ValueError, RuntimeError) as e:  # a port taken, a repository that cannot be read
        log.critical("varigate serve: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        return 1
