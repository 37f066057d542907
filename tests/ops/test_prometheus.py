"""The dashboard and the recording rules against a real Prometheus (Debian's) scraping a real gateway
under load: every panel's PromQL, read from the checked-in dashboard JSON with its template variables
substituted, and every recording rule, evaluated through Prometheus's HTTP API, returns series carrying the
labels the panel's legend (or the rule's ``by``) names. ``promtool check metrics`` reads the gateway's
/metrics. With ``VARIGATE_OPS_DOCS=1`` the run also redraws docs/ops/*.png (docs/operations.md).

The gateway: tiny fp32 / int8 and a corrupted ``bad`` variant (slow fp32, fast int8 by the test backend's
sleeps), every request shadowed, so the run shows the mix moving, drift and a demotion; plus requests with
an SLO of 1 ms (early rejections) and a few with an out-of-range id (backend errors).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as th
import tritonclient.http.aio as tha
import yaml
from tritonclient.utils import InferenceServerException

from loadtest.peers.triton import TritonServer, ensure_installed
from tests.e2e.support import infer_inputs, run_gateway
from tests.fixtures.tinyrepo import POISON_ID, build_tiny_repository
from tests.gateway.policy.conftest import FAST_POLICY, PAIR
from tests.gateway.policy.support import DELAYS, GatewayProcess, open_loop
from tests.ops.support import RULES, PrometheusServer, peer_binaries
from varigate.ops import panels
from varigate.ops.dashboard import OUTPUT, queries
from varigate.ops.promql import Prometheus, Series
from varigate.ops.render import render_panels
from varigate.triton_repo import write_python_backend_repo

MODEL = "tiny"
VARIANTS = ("tiny.fp32", "tiny.int8", "tiny.bad")
RATE_INTERVAL = "1m"  # Grafana's $__rate_interval; the run is shorter than it, rate() uses what is there
DATA_TIMEOUT_S = 20.0
DOCS = Path(__file__).resolve().parents[2] / "docs" / "ops"
WRITE_DOCS = os.environ.get("VARIGATE_OPS_DOCS") == "1"
STRETCH = 12 if WRITE_DOCS else 1  # the docs' run: phases 12x longer (~3 min), so 1-minute rates settle
DOC_PANELS = (
    "Request rate by variant",
    "Request latency p50 / p99 by variant",
    "Queue depth and in-flight requests",
    "Variant mix over time",
    "SLO attainment",
    "Accuracy drift per variant",
)


@dataclass(frozen=True, slots=True)
class Scraped:
    gateway: GatewayProcess
    api: Prometheus
    variables: dict[str, str]
    start_s: float
    end_s: float


async def _drive(gw: GatewayProcess) -> None:
    """~12 s: light traffic (fp32 serves, shadows catch ``bad``), a burst (the mix steps down to int8),
    light again; requests with an SLO of 1 ms (refused at arrival) and two with a poisoned id between."""
    async with tha.InferenceServerClient(gw.http, conn_limit=300) as client:
        await open_loop(client, MODEL, [(4 * STRETCH, 10)])
        ids = np.full((1, 4), POISON_ID, dtype=np.int64)
        for seed in range(2):
            with pytest.raises(InferenceServerException):
                await client.infer("tiny.int8", infer_inputs(th, ids, np.ones_like(ids)))
            refused = await open_loop(client, MODEL, [(0.5, 10)], slo_ms=1)  # under --slo-infeasible reject
            assert all(r.status != "ok" for r in refused), seed
        await open_loop(client, MODEL, [(3 * STRETCH, 50)], 4)
        await open_loop(client, MODEL, [(3 * STRETCH, 10)])


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """The gateway runs ``tiny.bad`` on a real Triton server (``--variant-placement tiny.bad=remote``): every
    request's shadow goes there, so the backend-server panels have data too."""
    tmp = tmp_path_factory.mktemp("prometheus")
    peer_binaries()  # installs Debian's prometheus when missing (outside the timed part)
    repo = build_tiny_repository(
        tmp / "repo", variants=("fp32", "int8", "bad"), delays_ms=DELAYS, losses=(("bad", 0.005),),
        default_slo_ms=250,
    )  # fmt: skip
    write_python_backend_repo(repo, tmp / "triton", ["tiny.bad"])
    with TritonServer(ensure_installed(), tmp / "triton", tmp / "triton.log") as triton:
        args = [*("--backend", PAIR, *FAST_POLICY, "--shadow-fraction", "1", "--drift-min-samples", "10"),
                *("--slo-infeasible", "reject", "--triton-servers", triton.grpc_url),
                *("--variant-placement", "tiny.bad=remote")]  # fmt: skip
        gw = GatewayProcess(repo, tmp / "gateway.log", args)
        try:
            gw.start()
            target = f"127.0.0.1:{gw.metrics_port}"
            with PrometheusServer(tmp / "prom", [target]) as prom:
                start = time.time()
                asyncio.run(_drive(gw))
                end = time.time()
                variables = {"model": MODEL, "instance": target, "__rate_interval": RATE_INTERVAL}
                yield Scraped(gw, prom.api, variables, start, end)
        finally:
            gw.kill()


def _until_data(api: Prometheus, expr: str) -> list[Series]:
    """The series of ``expr`` once it has any (Prometheus scrapes and evaluates rules every second)."""
    deadline = time.monotonic() + DATA_TIMEOUT_S
    while not (found := api.query(expr)) and time.monotonic() < deadline:
        time.sleep(0.25)  # polling interval
    return found


def _assert_labelled(found: list[Series], labels: tuple[str, ...], what: str) -> None:
    assert found, f"{what}: no data"
    for series in found:
        missing = [name for name in labels if not series.labels.get(name)]
        assert not missing, f"{what}: series {series.labels} lacks {missing}"


def test_every_panel_query_returns_data_with_its_labels(scraped: Scraped) -> None:
    board = json.loads(OUTPUT.read_text())
    found = queries(board)
    assert len(found) == sum(len(p.targets) for row in panels.ROWS for p in row.panels)
    for title, expr, legend in found:
        concrete = panels.substitute(expr, scraped.variables)
        labels = panels.Target(expr, legend).labels
        series = _until_data(scraped.api, concrete)
        _assert_labelled(series, labels, f"{title}: {concrete}")
        if "variant" in labels:  # the late-binding queue of the logical model reports as variant "tiny"
            assert {s.labels["variant"] for s in series} <= {MODEL, *VARIANTS}, title


def test_the_run_shows_what_the_panels_are_for(scraped: Scraped) -> None:
    """Not just any data: the demoted variant is ``bad``, the early rejections say ``overloaded`` (an SLO
    of 1 ms), the errors ``backend`` (the poisoned ids)."""
    v = scraped.variables
    demoted = scraped.api.query(panels.substitute(panels.ACCURACY.panels[2].targets[0].expr, v))
    assert {s.labels["variant"]: s.points[0][1] for s in demoted}.get("tiny.bad") == 1
    rejected = scraped.api.query(panels.substitute(panels.ERRORS.panels[0].targets[0].expr, v))
    assert "overloaded" in {s.labels["reason"] for s in rejected}
    errors = scraped.api.query(panels.substitute(panels.ERRORS.panels[1].targets[0].expr, v))
    assert "backend" in {s.labels["outcome"] for s in errors}


def test_every_recording_rule_returns_data_with_its_labels(scraped: Scraped) -> None:
    rules = [
        rule
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]
    assert len(rules) >= 10
    for rule in rules:
        by = re.search(r"by \(([^)]*)\)", rule["expr"])
        assert by, rule["record"]
        labels = tuple(name.strip() for name in by.group(1).split(",") if name.strip() != "le")
        _assert_labelled(_until_data(scraped.api, rule["record"]), labels, rule["record"])


def test_promtool_check_metrics_on_the_gateways_metrics(scraped: Scraped, tmp_path: Path) -> None:
    """With ``--no-metrics-triton-compatible`` the gateway's whole /metrics passes promtool's lint. By
    default it also carries Triton's own family (``nv_inference_count``, ``..._duration_us``, counters
    without ``_total``) so Triton dashboards work unchanged; promtool flags exactly those names and nothing
    else (the native ``varigate_*`` family, the fleet's included, passes)."""
    promtool = str(peer_binaries()[0])
    text = httpx.get(scraped.gateway.metrics_url).text
    assert "varigate_backend_server_up" in text and "nv_inference_count" in text
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert problems and all(line.split()[0].startswith("nv_inference_") for line in problems), problems
    for gw in run_gateway(tmp_path, ["--no-metrics-triton-compatible"]):
        asyncio.run(_light(gw))
        text = httpx.get(gw.metrics_url).text
    assert "varigate_requests_total" in text and "nv_inference" not in text
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


async def _light(gw: GatewayProcess) -> None:
    async with tha.InferenceServerClient(gw.http) as client:
        replies = await open_loop(client, MODEL, [(1.0, 10)])
    assert all(r.status == "ok" for r in replies)


def test_panel_images_from_the_run(scraped: Scraped, tmp_path: Path) -> None:
    out = DOCS if WRITE_DOCS else tmp_path
    chosen = [p for row in panels.ROWS for p in row.panels if p.title in DOC_PANELS]
    assert len(chosen) == len(DOC_PANELS)
    drawn = render_panels(scraped.api, chosen, scraped.variables, scraped.start_s, time.time(), out)
    for path, series in drawn.items():
        assert series >= 1, path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000, path
