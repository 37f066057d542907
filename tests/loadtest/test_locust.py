"""The Locust file, run by Locust itself (headless, as a team would run it) against a real gateway with both
users, checked against the gateway's own metrics; and its request bodies are what tritonclient sends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadtest.clients import grpc_inputs
from loadtest.locust_support import LocustSettings, http_requests, http_variant
from loadtest.server import GatewayProcess
from tests.e2e.support import ROOT, metric_value, run_gateway
from tests.loadtest.conftest import tiny_payloads

LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"
RUN_TIME_S = 3
KILL_AFTER_S = 60  # Locust that has not stopped by itself by then is killed, and the test fails
STARTUP_ALLOWANCE_S = 20  # Locust's own start (gevent, imports) and its stop timeout


@pytest.fixture(scope="module")
def locust_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway of its own, so that its request counters hold Locust's requests and nothing else."""
    yield from run_gateway(tmp_path_factory.mktemp("locust"))


def run_locust(
    gw: GatewayProcess, tmp: Path, grpc_url: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``locust --headless -t 3s`` with both users over the tiny ids (an .npz the locustfile reads)."""
    p = tiny_payloads(16)
    ids, mask = (np.concatenate([r[k] for r in p.requests]) for k in ("input_ids", "attention_mask"))
    np.savez(tmp / "tiny.npz", input_ids=ids, attention_mask=mask)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VARIGATE_LT_MODEL": "tiny",
        "VARIGATE_LT_GRPC": grpc_url,
        "VARIGATE_LT_DATA": str(tmp / "tiny.npz"),
    }
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", f"http://{gw.http}"]
    cmd += ["-u", "4", "-r", "4", "-t", f"{RUN_TIME_S}s", "--stop-timeout", "5", "--json", "--only-summary"]
    start = time.monotonic()
    try:
        done = subprocess.run(
            [*cmd, "KServeHttpUser", "KServeGrpcUser"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=KILL_AFTER_S,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"Locust did not stop at its {RUN_TIME_S} s limit and was killed: {e.stderr!r:.2000}")
    return done, time.monotonic() - start


def rows(done: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """Locust's final stats (``--json``), by (request type, name)."""
    return {(e["method"], e["name"]): e for e in json.loads(done.stdout)}


def test_locust_drives_both_protocols_and_stops_at_its_time_limit(
    locust_gateway: GatewayProcess, tmp_path: Path
) -> None:
    done, elapsed_s = run_locust(locust_gateway, tmp_path, locust_gateway.grpc)
    assert done.returncode == 0, done.stderr[-3000:]
    assert RUN_TIME_S <= elapsed_s < RUN_TIME_S + STARTUP_ALLOWANCE_S
    assert "--run-time limit reached" in done.stderr
    stats = rows(done)
    http, grpc = stats["POST", "infer tiny (binary)"], stats["grpc", "ModelInfer tiny"]
    assert http["num_failures"] == 0 and grpc["num_failures"] == 0, done.stderr[-3000:]
    assert http["num_requests"] >= 10 and grpc["num_requests"] >= 10
    # the HTTP user reports the serving variant as its own row, once per answer
    assert stats["variant", "tiny.fp32"]["num_requests"] == http["num_requests"]
    metrics = urllib.request.urlopen(locust_gateway.metrics_url, timeout=10).read().decode()
    served = metric_value(metrics, "nv_inference_request_success")
    assert served == http["num_requests"] + grpc["num_requests"]
    assert metric_value(metrics, "nv_inference_request_failure") == 0


def test_an_unreachable_grpc_server_is_one_named_failure(
    locust_gateway: GatewayProcess, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on: bind one, then let it go
        s.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{s.getsockname()[1]}"
    before = metric_value(
        urllib.request.urlopen(locust_gateway.metrics_url, timeout=10).read().decode(),
        "nv_inference_request_success",
    )
    done, elapsed_s = run_locust(locust_gateway, tmp_path, nowhere)
    assert done.returncode == 1  # Locust's exit code when a request failed
    assert RUN_TIME_S <= elapsed_s < RUN_TIME_S + STARTUP_ALLOWANCE_S
    stats = rows(done)
    grpc = stats["grpc", "ModelInfer tiny"]
    # once per gRPC user (2 of the 4), not in a tight loop
    assert grpc["num_requests"] == grpc["num_failures"] and 1 <= grpc["num_failures"] <= 4
    assert f"gRPC server {nowhere} (VARIGATE_LT_GRPC): StatusCode.UNAVAILABLE" in done.stderr
    http = stats["POST", "infer tiny (binary)"]
    assert http["num_failures"] == 0 and http["num_requests"] >= 10  # the HTTP user carries on
    after = urllib.request.urlopen(locust_gateway.metrics_url, timeout=10).read().decode()
    assert metric_value(after, "nv_inference_request_success") - before == http["num_requests"]


@pytest.mark.parametrize("binary", [False, True])
def test_http_bodies_are_served(tiny_gateway: GatewayProcess, binary: bool) -> None:
    for body, headers in http_requests(tiny_payloads(3), binary=binary, parameters={"slo_ms": 500}):
        req = urllib.request.Request(
            f"http://{tiny_gateway.http}/v2/models/tiny/infer", data=body, headers=headers, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
            assert http_variant(r.read(), r.headers) == "tiny.fp32"


def test_grpc_inputs_and_settings(tiny_gateway: GatewayProcess) -> None:
    import tritonclient.grpc as grpcclient

    settings = LocustSettings.from_env(
        {"VARIGATE_LT_MODEL": "tiny", "VARIGATE_LT_SLO_MS": "250", "VARIGATE_LT_BINARY": "0"}
    )
    assert settings.parameters() == {"slo_ms": 250} and not settings.binary
    client = grpcclient.InferenceServerClient(tiny_gateway.grpc)
    try:
        inputs, outputs = grpc_inputs(tiny_payloads(1))[0]
        result = client.infer(settings.model, inputs, outputs=outputs, parameters=settings.parameters())
        assert result.get_response().parameters["varigate_variant"].string_param == "tiny.fp32"
    finally:
        client.close()
