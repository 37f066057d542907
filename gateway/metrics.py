"""Prometheus metrics: the core's ``Observer``, on a registry of its own (one per app, never the global).

Two families:

- native, by Prometheus conventions: ``varigate_requests_total{model,variant,protocol,outcome}``, latency
  histograms in seconds with millisecond buckets (end to end, queue, compute), the executed batch size,
  batches by outcome, queue depth and in-flight gauges, model load state. Histograms aggregate across
  replicas, so p99 can be computed fleet-wide.
- Triton-compatible (``nv_inference_*``, labels ``model`` = the variant's Triton model name and
  ``version``) so Triton dashboards keep working. Triton names its counters without ``_total``;
  prometheus-client always adds that suffix to counters, so this family is written out by ``render``.

Variant selection, SLOs and live accuracy drift (``varigate_policy_*``, ``varigate_slo_requests_total``,
``varigate_shadow_*``, ``varigate_live_*`` ...) are ``Metrics.policy`` (``gateway/metrics_policy.py``), on the
same registry.

``render()`` gives the exposition bytes; ``asgi_app()`` serves them on ``/metrics`` (for a separate port).

Label values are bounded: ``model`` / ``variant`` only ever name models the gateway announced (loaded or
queued, so from the repository). A request event naming anything else is counted with ``model=""``,
``variant=""``, ``version=""`` (``UNKNOWN_MODEL``), so no request can add a series per name it makes up.
Today the core reports only routed requests; requests for unknown or unready models are not counted.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gateway.core.telemetry.observer import BatchEvent, Outcome, RequestEvent
from gateway.metrics_policy import PolicyMetrics

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
UNKNOWN_MODEL = ""  # model, variant and version label of a request event for a model never announced

# Our failure reasons (GatewayError.reason) -> Triton's nv_inference_request_failure reasons.
TRITON_REASONS = {
    "rejected": "REJECTED",
    "timeout": "REJECTED",
    "backend": "BACKEND",
    "unavailable": "CANCELED",
}

_TRITON_COUNTERS = {
    "nv_inference_request_success": "Number of successful inference requests, all batch sizes",
    "nv_inference_request_failure": "Number of failed inference requests, all batch sizes",
    "nv_inference_count": "Number of inferences performed (does not include cached requests)",
    "nv_inference_exec_count": "Number of model executions performed (does not include cached requests)",
    "nv_inference_request_duration_us": "Cumulative inference request duration in microseconds",
    "nv_inference_queue_duration_us": "Cumulative inference queuing duration in microseconds",
    "nv_inference_compute_infer_duration_us": "Cumulative compute inference duration in microseconds",
}
_TRITON_GAUGES = {
    "nv_inference_pending_request_count": "Instantaneous number of pending requests awaiting execution"
}

Labels = tuple[tuple[str, str], ...]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Metrics:
    """Implements ``gateway.core.telemetry.observer.Observer``."""

    content_type = CONTENT_TYPE_PLAIN_0_0_4  # the format render() writes

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        mv = ["model", "variant"]
        self.requests = Counter(
            "varigate_requests",
            "Requests by logical model, variant, protocol and outcome",
            [*mv, "protocol", "outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "varigate_request_duration_seconds",
            "End-to-end request time in the service",
            [*mv, "protocol"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_duration = Histogram(
            "varigate_queue_duration_seconds",
            "Time a request waited for its batch",
            mv,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.compute_duration = Histogram(
            "varigate_compute_duration_seconds",
            "Compute time of the batch a request ran in",
            mv,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            "varigate_batch_size", "Rows per executed batch", mv, buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.batches = Counter(
            "varigate_batches", "Batches executed, by outcome", [*mv, "outcome"], registry=r
        )
        self.queue_depth = Gauge(
            "varigate_queue_depth", "Requests waiting for a batch", [*mv, "version"], registry=r
        )
        self.inflight = Gauge(
            "varigate_inflight_requests", "Requests accepted and not finished", [*mv, "version"], registry=r
        )
        self.model_ready = Gauge(
            "varigate_model_ready",
            "1 when the model version is loaded and ready",
            ["model", "version"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "varigate_variant_circuit_open", "1 while the variant's circuit breaker is open", mv, registry=r
        )
        self.policy = PolicyMetrics(r)  # variant selection, SLOs, drift: the policies' PolicyObserver
        self._lock = threading.Lock()
        self._triton: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._known: set[str] = set()  # models announced by model_state / queue_changed

    # -- Observer ---------------------------------------------------------------------------------------

    def request_done(self, event: RequestEvent) -> None:
        if event.model not in self._known:
            unknown = UNKNOWN_MODEL
            event = dataclasses.replace(event, logical_model=unknown, model=unknown, version=unknown)
        mv = (event.logical_model, event.model)
        outcome = event.outcome.value if event.outcome is Outcome.SUCCESS else event.reason
        self.requests.labels(*mv, event.protocol, outcome).inc()
        self.policy.request_done(event)
        tri = (("model", event.model), ("version", event.version))
        if event.outcome is Outcome.SUCCESS:
            self.request_duration.labels(*mv, event.protocol).observe(event.request_s)
            self.queue_duration.labels(*mv).observe(event.queue_s)
            self.compute_duration.labels(*mv).observe(event.compute_s)
            self._add("nv_inference_request_success", tri, 1)
            self._add("nv_inference_request_duration_us", tri, event.request_s * 1e6)
            self._add("nv_inference_queue_duration_us", tri, event.queue_s * 1e6)
            self._add("nv_inference_compute_infer_duration_us", tri, event.compute_s * 1e6)
        else:
            self._add(
                "nv_inference_request_failure",
                (*tri, ("reason", TRITON_REASONS.get(event.reason, "OTHER"))),
                1,
            )

    def batch_done(self, event: BatchEvent) -> None:
        mv = (event.logical_model, event.model)
        self.batches.labels(*mv, "success" if event.ok else "failure").inc()
        if event.ok:
            self.batch_size.labels(*mv).observe(event.rows)
            tri = (("model", event.model), ("version", event.version))
            self._add("nv_inference_count", tri, event.rows)
            self._add("nv_inference_exec_count", tri, 1)

    def queue_changed(self, logical_model: str, model: str, version: str, queued: int, inflight: int) -> None:
        self._known.add(model)
        self.queue_depth.labels(logical_model, model, version).set(queued)
        self.inflight.labels(logical_model, model, version).set(inflight)
        with self._lock:
            self._triton["nv_inference_pending_request_count"][(("model", model), ("version", version))] = (
                queued
            )

    def circuit_changed(self, logical_model: str, model: str, open_: bool) -> None:
        self.circuit_open.labels(logical_model, model).set(1 if open_ else 0)

    def model_state(self, model: str, version: str, ready: bool) -> None:
        self._known.add(model)
        self.model_ready.labels(model, version).set(1 if ready else 0)

    # -- exposition -------------------------------------------------------------------------------------

    def _add(self, name: str, labels: Labels, value: float) -> None:
        with self._lock:
            family = self._triton[name]
            family[labels] = family.get(labels, 0.0) + value

    def render(self) -> bytes:
        """The whole text exposition (format 0.0.4): native metrics, then Triton's."""
        lines: list[str] = []
        with self._lock:
            for kind, families in (("counter", _TRITON_COUNTERS), ("gauge", _TRITON_GAUGES)):
                for name, help_text in families.items():
                    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                    for labels, value in sorted(self._triton.get(name, {}).items()):
                        lines.append(f"{name}{{{_labels(labels)}}} {_number(value)}")
        return generate_latest(self.registry) + ("\n".join(lines) + "\n").encode()

    def asgi_app(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """A minimal ASGI app answering ``GET /metrics`` (and ``/``) with ``render()``."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            if scope["type"] != "http":
                return
            found = scope["path"] in ("/metrics", "/") and scope["method"] in ("GET", "HEAD")
            body = self.render() if found else b"not found; metrics are at /metrics\n"
            headers = [(b"content-type", (self.content_type if found else "text/plain").encode())]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": 200 if found else 404, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

        return app


def _labels(labels: Labels) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    return repr(float(value))
