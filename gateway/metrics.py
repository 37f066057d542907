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

Cheap per request: labelled children are made once and kept (``_Children``), Triton's counters of one
event are added under one lock, and the queue gauges (reported by the batchers on every enqueue, batch and
finish) are set from the last report when a scrape reads them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics import MetricWrapperBase

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
_M = TypeVar("_M", bound=MetricWrapperBase)


class _Children(Generic[_M]):
    """A metric's labelled children, kept once made: ``labels()`` checks its arguments and takes a lock on
    every call. The label values are bounded (see the module docstring), and so is this cache."""

    __slots__ = ("_made", "_metric")

    def __init__(self, metric: _M) -> None:
        self._metric = metric
        self._made: dict[tuple[str, ...], _M] = {}

    def __call__(self, *values: str) -> _M:
        child = self._made.get(values)
        if child is None:
            child = self._made[values] = self._metric.labels(*values)
        return child


class Metrics:
    """Implements ``gateway.core.telemetry.observer.Observer``."""

    content_type = CONTENT_TYPE_PLAIN_0_0_4  # the format render() writes

    def __init__(self, registry: CollectorRegistry | None = None, triton_compatible: bool = True) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.triton_compatible = triton_compatible  # False: render() leaves the nv_inference_* family out
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
        self._requests, self._batches = _Children(self.requests), _Children(self.batches)
        self._request_duration = _Children(self.request_duration)
        self._queue_duration = _Children(self.queue_duration)
        self._compute_duration = _Children(self.compute_duration)
        self._batch_size = _Children(self.batch_size)
        self._queue_depth, self._inflight = _Children(self.queue_depth), _Children(self.inflight)
        self._lock = threading.Lock()
        self._triton: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._known: set[str] = set()  # models announced by model_state / queue_changed
        # (logical model, model, version) -> (queued, inflight) as last reported; the gauges are set from
        # it when they are read (render): a batcher reports several times per request
        self._queues: dict[tuple[str, str, str], tuple[int, int]] = {}

    # -- Observer ---------------------------------------------------------------------------------------

    def request_done(self, event: RequestEvent) -> None:
        if event.model not in self._known:
            unknown = UNKNOWN_MODEL
            event = dataclasses.replace(event, logical_model=unknown, model=unknown, version=unknown)
        mv = (event.logical_model, event.model)
        ok = event.outcome is Outcome.SUCCESS
        self._requests(*mv, event.protocol, event.outcome.value if ok else event.reason).inc()
        self.policy.request_done(event)
        tri = (("model", event.model), ("version", event.version))
        if ok:
            self._request_duration(*mv, event.protocol).observe(event.request_s)
            self._queue_duration(*mv).observe(event.queue_s)
            self._compute_duration(*mv).observe(event.compute_s)
            self._add(
                tri,
                ("nv_inference_request_success", 1),
                ("nv_inference_request_duration_us", event.request_s * 1e6),
                ("nv_inference_queue_duration_us", event.queue_s * 1e6),
                ("nv_inference_compute_infer_duration_us", event.compute_s * 1e6),
            )
        else:
            reason = ("reason", TRITON_REASONS.get(event.reason, "OTHER"))
            self._add((*tri, reason), ("nv_inference_request_failure", 1))

    def batch_done(self, event: BatchEvent) -> None:
        mv = (event.logical_model, event.model)
        self._batches(*mv, "success" if event.ok else "failure").inc()
        if event.ok:
            self._batch_size(*mv).observe(event.rows)
            tri = (("model", event.model), ("version", event.version))
            self._add(tri, ("nv_inference_count", event.rows), ("nv_inference_exec_count", 1))

    def queue_changed(self, logical_model: str, model: str, version: str, queued: int, inflight: int) -> None:
        self._known.add(model)
        self._queues[(logical_model, model, version)] = (queued, inflight)

    def circuit_changed(self, logical_model: str, model: str, open_: bool) -> None:
        self.circuit_open.labels(logical_model, model).set(1 if open_ else 0)

    def model_state(self, model: str, version: str, ready: bool) -> None:
        self._known.add(model)
        self.model_ready.labels(model, version).set(1 if ready else 0)

    # -- exposition -------------------------------------------------------------------------------------

    def _add(self, labels: Labels, *values: tuple[str, float]) -> None:
        with self._lock:
            for name, value in values:
                family = self._triton[name]
                family[labels] = family.get(labels, 0.0) + value

    def render(self) -> bytes:
        """The whole text exposition (format 0.0.4): native metrics, then Triton's."""
        lines: list[str] = []
        with self._lock:
            pending = self._triton["nv_inference_pending_request_count"]
            for (logical_model, model, version), (queued, inflight) in list(self._queues.items()):
                self._queue_depth(logical_model, model, version).set(queued)
                self._inflight(logical_model, model, version).set(inflight)
                pending[(("model", model), ("version", version))] = queued
            for kind, families in (("counter", _TRITON_COUNTERS), ("gauge", _TRITON_GAUGES)):
                if not self.triton_compatible:
                    break
                for name, help_text in families.items():
                    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                    for labels, value in sorted(self._triton.get(name, {}).items()):
                        lines.append(f"{name}{{{_labels(labels)}}} {_number(value)}")
        triton = ("\n".join(lines) + "\n").encode() if lines else b""
        return generate_latest(self.registry) + triton

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
