"""The Triton fleet's Prometheus metrics (``varigate_backend_server_*``), on the registry it is given.

Label values are bounded: ``server`` is one of the configured addresses, ``model`` a model some server's
repository index listed as READY (the fleet sends nothing else), ``reason`` one of ``REASONS``. Children are
made once per server at start, so every series exists (at zero) before the first request; the circuit and
outstanding gauges are read from the fleet when scraped.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.backends.triton_breaker import CIRCUIT_GAUGE
from gateway.backends.triton_health import ServerLink
from gateway.metrics import LATENCY_BUCKETS_S

REASONS = ("unavailable", "timeout", "rejected", "internal", "not_ready")


class FleetMetrics:
    def __init__(self, registry: CollectorRegistry, servers: Sequence[str]) -> None:
        self.requests = Counter(
            "varigate_backend_server_requests_total",
            "Inference attempts sent to a Triton server, by server and model",
            ["server", "model"],
            registry=registry,
        )
        self.errors = Counter(
            "varigate_backend_server_errors_total",
            "Failed inference attempts on a Triton server, by reason",
            ["server", "reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "varigate_backend_server_duration_seconds",
            "Time of one inference attempt on a Triton server (answered or not)",
            ["server"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.up = Gauge(
            "varigate_backend_server_up",
            "1 when the server's last health probe answered ready, else 0",
            ["server"],
            registry=registry,
        )
        self.retries = Counter(
            "varigate_backend_server_retries_total",
            "Batches retried on another server after an attempt on this one failed",
            ["server"],
            registry=registry,
        )
        self.circuit = Gauge(
            "varigate_backend_server_circuit_state",
            "The server's circuit breaker: 0 closed, 1 half-open, 2 open",
            ["server"],
            registry=registry,
        )
        self.outstanding = Gauge(
            "varigate_backend_server_outstanding",
            "Inference attempts in flight on the server",
            ["server"],
            registry=registry,
        )
        for server in servers:
            for reason in REASONS:
                self.errors.labels(server, reason)
            self.duration.labels(server)
            self.up.labels(server).set(0)
            self.retries.labels(server)

    def watch(self, server: ServerLink) -> None:
        """Read the server's circuit (it turns half-open with time, not on an event) and its attempts in
        flight when a scrape asks."""
        self.circuit.labels(server.address).set_function(lambda: CIRCUIT_GAUGE[server.breaker.state])
        self.outstanding.labels(server.address).set_function(lambda: server.outstanding)
