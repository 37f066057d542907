"""Prometheus metrics of variant selection, SLOs and live accuracy drift: ``PolicyMetrics`` implements
``gateway.core.selection.events.PolicyObserver`` on the gateway's registry (``Metrics.policy``).

Labels follow the request metrics: ``model`` is the logical model, ``variant`` the variant's Triton model
name (``minilm.int8``). Ratios are in [0, 1] (``_ratio``), latencies in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.core.telemetry.observer import Outcome, RequestEvent

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ERROR_RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0)
AGREEMENT_BUCKETS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999, 1.0)


_MV = ("model", "variant")


class _Maker:
    """Metrics on one registry, each in one line: name, help, labels (and buckets)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, doc: str, labels: Sequence[str] = _MV) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = _MV) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry)

    def histogram(
        self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = _MV
    ) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)


class PolicyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        m = _Maker(registry)
        self.slo_requests = m.counter(
            "varigate_slo_requests", "Requests with an SLO, by whether it was met", (*_MV, "result")
        )
        self.selections_total = m.counter(
            "varigate_policy_selections", "Variants the policy chose, by reason", (*_MV, "reason")
        )
        self.rejections_total = m.counter(
            "varigate_policy_rejections", "Requests refused before queueing", ("model", "reason")
        )
        self.switches_total = m.counter(
            "varigate_policy_switches",
            "Changes of the policy's ceiling variant",
            ("model", "from_variant", "to_variant", "direction"),
        )
        self.ceiling_variant = m.gauge("varigate_policy_ceiling", "1 for the current ceiling variant")
        self.predicted_latency = m.histogram(
            "varigate_policy_predicted_latency_seconds",
            "Request latency predicted when the request was routed",
            LATENCY_BUCKETS_S,
        )
        self.latency_error = m.histogram(
            "varigate_policy_latency_error_ratio",
            "Measured over predicted request latency",
            ERROR_RATIO_BUCKETS,
        )
        self.batch_predicted = m.histogram(
            "varigate_scheduler_batch_predicted_seconds",
            "Compute time the late-binding scheduler predicted for the batches it bound, by pool mode",
            LATENCY_BUCKETS_S,
            (*_MV, "mode"),
        )
        self.batch_error = m.histogram(
            "varigate_scheduler_batch_error_ratio",
            "Measured over predicted compute time of the batches the late-binding scheduler bound",
            ERROR_RATIO_BUCKETS,
            (*_MV, "mode"),
        )
        self.mix_ratio = m.gauge("varigate_policy_mix_ratio", "Share of recent selections")
        self.loss_ratio = m.gauge(
            "varigate_policy_accuracy_loss_ratio", "Running mean relative accuracy loss", ("model",)
        )
        self.dominated_variant = m.gauge(
            "varigate_variant_dominated", "1 for a variant left out as dominated"
        )
        self.shadow_requests = m.counter(
            "varigate_shadow_requests", "Shadow comparisons by outcome", (*_MV, "outcome")
        )
        self.shadow_agreement = m.histogram(
            "varigate_shadow_agreement_ratio",
            "Mean agreement with the fp32 reference per shadowed request",
            AGREEMENT_BUCKETS,
        )
        self.live_agreement = m.gauge(
            "varigate_live_agreement_ratio", "Live agreement with the reference (window mean)"
        )
        self.live_samples = m.gauge("varigate_live_agreement_samples", "Rows behind the live agreement")
        self.drift_ratio = m.gauge("varigate_accuracy_drift_ratio", "Card accuracy minus live agreement")
        self.demoted_variant = m.gauge("varigate_variant_demoted", "1 while a variant is demoted")
        self.demotions_total = m.counter("varigate_demotions", "Variants demoted by drift")
        self.live_accuracy = m.gauge("varigate_live_accuracy_ratio", "Accuracy against ground-truth labels")
        self.labels_total = m.counter("varigate_labels", "Ground-truth labels received (rows)")
        self._labelled: dict[tuple[str, str], int] = {}

    def request_done(self, event: RequestEvent) -> None:
        if event.slo_met is not None:
            result = "met" if event.slo_met and event.outcome is Outcome.SUCCESS else "missed"
            self.slo_requests.labels(event.logical_model, event.model, result).inc()

    # -- PolicyObserver ---------------------------------------------------------------------------------

    def selection(self, model: str, variant: str, reason: str) -> None:
        self.selections_total.labels(model, variant, reason).inc()

    def rejection(self, model: str, reason: str) -> None:
        self.rejections_total.labels(model, reason).inc()

    def switch(self, model: str, old: str, new: str, direction: str) -> None:
        self.switches_total.labels(model, old, new, direction).inc()
        self.ceiling_variant.labels(model, old).set(0)
        self.ceiling_variant.labels(model, new).set(1)

    def prediction(self, model: str, variant: str, predicted_s: float, measured_s: float) -> None:
        self.predicted_latency.labels(model, variant).observe(predicted_s)
        if predicted_s > 0:
            self.latency_error.labels(model, variant).observe(measured_s / predicted_s)

    def batch_prediction(
        self, model: str, variant: str, mode: str, predicted_s: float, measured_s: float
    ) -> None:
        self.batch_predicted.labels(model, variant, mode).observe(predicted_s)
        if predicted_s > 0:
            self.batch_error.labels(model, variant, mode).observe(measured_s / predicted_s)

    def mix(self, model: str, shares: Mapping[str, float], loss_mean: float) -> None:
        for variant, share in shares.items():
            self.mix_ratio.labels(model, variant).set(share)
        self.loss_ratio.labels(model).set(loss_mean)

    def dominated(self, model: str, variant: str, by: str) -> None:
        self.dominated_variant.labels(model, variant).set(1 if by else 0)

    def shadow(self, model: str, variant: str, outcome: str, agreement: float | None) -> None:
        self.shadow_requests.labels(model, variant, outcome).inc()
        if agreement is not None:
            self.shadow_agreement.labels(model, variant).observe(agreement)

    def drift(self, model: str, variant: str, live: float, samples: int, drift: float) -> None:
        self.live_agreement.labels(model, variant).set(live)
        self.live_samples.labels(model, variant).set(samples)
        self.drift_ratio.labels(model, variant).set(drift)

    def demotion(self, model: str, variant: str, demoted: bool) -> None:
        self.demoted_variant.labels(model, variant).set(1 if demoted else 0)
        if demoted:
            self.demotions_total.labels(model, variant).inc()

    def labelled(self, model: str, variant: str, correct: int, total: int) -> None:
        before = self._labelled.get((model, variant), 0)
        self._labelled[(model, variant)] = total
        self.labels_total.labels(model, variant).inc(total - before)
        self.live_accuracy.labels(model, variant).set(correct / total if total else 0.0)
