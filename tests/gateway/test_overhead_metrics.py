"""Metrics kept cheap per request: labelled children made once and reused, Triton's counters added under
one lock, and the queue gauges set from the batchers' last reports when they are read. What a scrape shows
must be what it showed when every event went straight to prometheus-client."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.core.telemetry.observer import BatchEvent, Outcome, RequestEvent
from gateway.metrics import Metrics

Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(metrics: Metrics) -> dict[Sample, float]:
    out: dict[Sample, float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            name = family.name if family.name.startswith("nv_") and s.name.endswith("_total") else s.name
            out[(name, tuple(sorted(s.labels.items())))] = s.value
    return out


def event(
    protocol: str, outcome: Outcome = Outcome.SUCCESS, reason: str = "", model: str = "m.a"
) -> RequestEvent:
    return RequestEvent("m", model, "1", protocol, outcome, reason, 1, 0.004, 0.001, 0.002)


def key(name: str, **labels: str) -> Sample:
    return name, tuple(sorted(labels.items()))


def test_repeated_events_add_up_per_label_set() -> None:
    metrics = Metrics()
    metrics.model_state("m.a", "1", True)
    for _ in range(3):
        metrics.request_done(event("grpc"))
    metrics.request_done(event("http"))
    metrics.request_done(event("http", Outcome.FAILURE, "rejected"))
    metrics.request_done(event("grpc", Outcome.FAILURE, "timeout", model="made.up"))
    metrics.batch_done(BatchEvent("m", "m.a", "1", 4, 3, 0.002, True))
    metrics.batch_done(BatchEvent("m", "m.a", "1", 2, 2, 0.002, True))
    metrics.batch_done(BatchEvent("m", "m.a", "1", 1, 1, 0.002, False))
    got = scrape(metrics)
    mv = {"model": "m", "variant": "m.a"}
    assert got[key("varigate_requests_total", **mv, protocol="grpc", outcome="success")] == 3
    assert got[key("varigate_requests_total", **mv, protocol="http", outcome="success")] == 1
    assert got[key("varigate_requests_total", **mv, protocol="http", outcome="rejected")] == 1
    unknown = {"model": "", "variant": ""}
    assert got[key("varigate_requests_total", **unknown, protocol="grpc", outcome="timeout")] == 1
    assert got[key("varigate_request_duration_seconds_count", **mv, protocol="grpc")] == 3
    assert got[key("varigate_request_duration_seconds_bucket", **mv, protocol="grpc", le="0.005")] == 3
    assert got[key("varigate_request_duration_seconds_bucket", **mv, protocol="grpc", le="0.0025")] == 0
    assert got[key("varigate_queue_duration_seconds_count", **mv)] == 4
    assert got[key("varigate_batch_size_sum", **mv)] == 6
    assert got[key("varigate_batches_total", **mv, outcome="failure")] == 1
    tri = {"model": "m.a", "version": "1"}
    assert got[key("nv_inference_request_success", **tri)] == 4
    assert got[key("nv_inference_request_failure", **tri, reason="REJECTED")] == 1
    assert got[key("nv_inference_request_failure", model="", version="", reason="REJECTED")] == 1
    assert abs(got[key("nv_inference_request_duration_us", **tri)] - 4 * 4000) < 1e-6
    assert abs(got[key("nv_inference_compute_infer_duration_us", **tri)] - 4 * 2000) < 1e-6
    assert got[key("nv_inference_count", **tri)] == 6 and got[key("nv_inference_exec_count", **tri)] == 2


def test_queue_gauges_show_the_last_report_at_each_scrape() -> None:
    metrics = Metrics()
    for queued, inflight in ((1, 1), (2, 3), (5, 7)):
        metrics.queue_changed("m", "m.a", "1", queued, inflight)
    metrics.queue_changed("m", "m.b", "2", 4, 4)
    first = scrape(metrics)
    labels = {"model": "m", "variant": "m.a", "version": "1"}
    assert first[key("varigate_queue_depth", **labels)] == 5
    assert first[key("varigate_inflight_requests", **labels)] == 7
    assert first[key("nv_inference_pending_request_count", model="m.a", version="1")] == 5
    assert first[key("nv_inference_pending_request_count", model="m.b", version="2")] == 4
    metrics.queue_changed("m", "m.a", "1", 0, 2)
    second = scrape(metrics)
    assert second[key("varigate_queue_depth", **labels)] == 0
    assert second[key("varigate_inflight_requests", **labels)] == 2
    assert second[key("nv_inference_pending_request_count", model="m.a", version="1")] == 0
    assert second[key("varigate_queue_depth", model="m", variant="m.b", version="2")] == 4
