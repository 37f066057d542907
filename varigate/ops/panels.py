"""The dashboard's panels as data: rows of panels, each panel's PromQL targets and its legend.

One source for the dashboard generator (``varigate.ops.dashboard``), the test that evaluates every query
against a real Prometheus (``tests/ops``), and the docs' images (``varigate.ops.render``). A target's legend
names, as ``{{label}}``, the labels every series it returns must carry.

Queries filter on the dashboard's template variables ``$model`` (the logical model) and ``$instance``
(the scraped gateway). The heavy ones read the recording rules of ``deploy/prometheus/rules.yml`` (names
``level:metric:operations``, kept per instance so ``$instance`` still filters); the others take Grafana's
``$__rate_interval``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEL = 'model=~"$model", instance=~"$instance"'
FLEET_SEL = 'instance=~"$instance"'  # the fleet's series name servers; their model label is the variant
RATE = "[$__rate_interval]"

# recording rules (deploy/prometheus/rules.yml)
REQUESTS = "instance_model_variant_outcome:varigate_requests:rate1m"
SLO_REQUESTS = "instance_model_variant_result:varigate_slo_requests:rate1m"
LATENCY_BUCKETS = "instance_model_variant_le:varigate_request_duration_seconds_bucket:rate1m"
BATCH_ROWS = "instance_model_variant:varigate_batch_size_sum:rate1m"
BATCHES = "instance_model_variant:varigate_batch_size_count:rate1m"


@dataclass(frozen=True, slots=True)
class Target:
    expr: str
    legend: str

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels the legend names: every series of the query must carry them."""
        return tuple(re.findall(r"\{\{\s*(\w+)\s*\}\}", self.legend))


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    description: str
    unit: str
    targets: tuple[Target, ...]
    stacked: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _quantiles(buckets: str, by: str, what: str) -> tuple[Target, ...]:
    return tuple(
        Target(f"histogram_quantile({q}, sum by ({by}, le) ({buckets}))", f"p{round(q * 100)} {what}")
        for q in (0.5, 0.99)
    )


TRAFFIC = Row(
    "Traffic",
    (
        Panel(
            "Request rate by variant",
            "Requests answered per second, any outcome, by the variant that served them.",
            "reqps",
            (Target(f"sum by (variant) ({REQUESTS}{{{SEL}}})", "{{variant}}"),),
            stacked=True,
        ),
        Panel(
            "Goodput by variant",
            "Requests per second answered within their SLO (requests without an SLO are not counted).",
            "reqps",
            (Target(f'sum by (variant) ({SLO_REQUESTS}{{result="met", {SEL}}})', "{{variant}}"),),
            stacked=True,
        ),
    ),
)

LATENCY = Row(
    "Latency",
    (
        Panel(
            "Request latency p50 / p99 by variant",
            "End-to-end time in the gateway, from the histograms (aggregates across replicas).",
            "s",
            _quantiles(f"{LATENCY_BUCKETS}{{{SEL}}}", "variant", "{{variant}}"),
        ),
        Panel(
            "Queue wait and compute p99",
            "Where the time goes: waiting for a batch, and the compute of the batch a request ran in.",
            "s",
            tuple(
                Target(
                    f"histogram_quantile(0.99, sum by (variant, le) "
                    f"(rate(varigate_{part}_duration_seconds_bucket{{{SEL}}}{RATE})))",
                    f"{part} {{{{variant}}}}",
                )
                for part in ("queue", "compute")
            ),
        ),
    ),
)

LOAD = Row(
    "Load",
    (
        Panel(
            "Queue depth and in-flight requests",
            "Requests waiting for a batch, and accepted but not finished (the autoscaler's signal). Under "
            "late binding a logical model's requests wait in one queue, shown under the model's own name.",
            "short",
            (
                Target(f"sum by (variant) (varigate_queue_depth{{{SEL}}})", "queued {{variant}}"),
                Target(f"sum by (variant) (varigate_inflight_requests{{{SEL}}})", "in flight {{variant}}"),
            ),
        ),
        Panel(
            "Executed batch size",
            "Mean rows per executed batch.",
            "short",
            (
                Target(
                    f"sum by (variant) ({BATCH_ROWS}{{{SEL}}}) / sum by (variant) ({BATCHES}{{{SEL}}})",
                    "{{variant}}",
                ),
            ),
        ),
    ),
)

SELECTION = Row(
    "Variant selection and SLO",
    (
        Panel(
            "Variant mix over time",
            "Share of recent selections per variant (the policy's own window), averaged over replicas.",
            "percentunit",
            (Target(f"avg by (variant) (varigate_policy_mix_ratio{{{SEL}}})", "{{variant}}"),),
            stacked=True,
        ),
        Panel(
            "SLO attainment",
            "Share of requests with an SLO that met it; the burn-rate alerts fire on the model's line.",
            "percentunit",
            (
                Target(
                    f'sum by (model) ({SLO_REQUESTS}{{result="met", {SEL}}}) '
                    f"/ sum by (model) ({SLO_REQUESTS}{{{SEL}}})",
                    "{{model}}",
                ),
                Target(
                    f'sum by (variant) ({SLO_REQUESTS}{{result="met", {SEL}}}) '
                    f"/ sum by (variant) ({SLO_REQUESTS}{{{SEL}}})",
                    "{{variant}}",
                ),
            ),
        ),
    ),
)

ACCURACY = Row(
    "Live accuracy",
    (
        Panel(
            "Live agreement per variant",
            "Agreement with the fp32 reference on shadowed requests (window mean).",
            "percentunit",
            (Target(f"min by (variant) (varigate_live_agreement_ratio{{{SEL}}})", "{{variant}}"),),
        ),
        Panel(
            "Accuracy drift per variant",
            "The card's accuracy minus the live agreement: above the accuracy budget, the drift alert fires.",
            "percentunit",
            (Target(f"max by (variant) (varigate_accuracy_drift_ratio{{{SEL}}})", "{{variant}}"),),
        ),
        Panel(
            "Demoted variants",
            "1 while the sequential drift test keeps a variant out of selection.",
            "short",
            (Target(f"max by (variant) (varigate_variant_demoted{{{SEL}}})", "{{variant}}"),),
        ),
    ),
)

ERRORS = Row(
    "Rejections and errors",
    (
        Panel(
            "Early rejections by reason",
            "Requests refused before queueing by the policy (deadline, overloaded).",
            "reqps",
            (
                Target(
                    f"sum by (reason) (rate(varigate_policy_rejections_total{{{SEL}}}{RATE}))",
                    "{{reason}}",
                ),
            ),
        ),
        Panel(
            "Errors by reason",
            "Requests that did not succeed, by outcome (rejected, timeout, backend, unavailable, ...).",
            "reqps",
            (Target(f'sum by (outcome) ({REQUESTS}{{outcome!="success", {SEL}}})', "{{outcome}}"),),
        ),
    ),
)

BACKEND_SERVERS = Row(
    "Backend servers (Triton fleet)",
    (
        Panel(
            "Backend server up",
            "1 while the gateway's health checks find the server ready.",
            "short",
            (Target(f"min by (server) (varigate_backend_server_up{{{FLEET_SEL}}})", "{{server}}"),),
        ),
        Panel(
            "Backend server request rate",
            "Batches sent to each server per second.",
            "reqps",
            (
                Target(
                    f"sum by (server) (rate(varigate_backend_server_requests_total{{{FLEET_SEL}}}{RATE}))",
                    "{{server}}",
                ),
            ),
        ),
        Panel(
            "Backend server errors and retries",
            "Failed calls by reason, and retries, per server.",
            "reqps",
            (
                Target(
                    "sum by (server, reason) "
                    f"(rate(varigate_backend_server_errors_total{{{FLEET_SEL}}}{RATE}))",
                    "{{server}} {{reason}}",
                ),
                Target(
                    f"sum by (server) (rate(varigate_backend_server_retries_total{{{FLEET_SEL}}}{RATE}))",
                    "retries {{server}}",
                ),
            ),
        ),
        Panel(
            "Backend server latency p99",
            "Time of a call to each server, from its histogram.",
            "s",
            (
                Target(
                    "histogram_quantile(0.99, sum by (server, le) "
                    f"(rate(varigate_backend_server_duration_seconds_bucket{{{FLEET_SEL}}}{RATE})))",
                    "{{server}}",
                ),
            ),
        ),
        Panel(
            "Circuit state and outstanding calls",
            "Circuit: 0 closed, 1 half-open, 2 open. Outstanding: calls in progress (least-outstanding).",
            "short",
            (
                Target(
                    f"max by (server) (varigate_backend_server_circuit_state{{{FLEET_SEL}}})",
                    "circuit {{server}}",
                ),
                Target(
                    f"sum by (server) (varigate_backend_server_outstanding{{{FLEET_SEL}}})",
                    "outstanding {{server}}",
                ),
            ),
        ),
    ),
)

ROWS = (TRAFFIC, LATENCY, LOAD, SELECTION, ACCURACY, ERRORS, BACKEND_SERVERS)


def substitute(expr: str, variables: dict[str, str]) -> str:
    """``expr`` with ``$name`` / ``${name}`` replaced by ``variables[name]`` (Grafana's own ones included:
    pass ``__rate_interval``); a variable left unreplaced raises, naming it."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(f"no value for template variable ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)
