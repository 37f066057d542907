"""The Locust file's request bodies are what tritonclient would send, and the gateway serves them.
(Locust itself is optional and need not be installed: the locustfile is only compiled here.)"""

from __future__ import annotations

import py_compile
import urllib.request
from pathlib import Path

import pytest

from loadtest.clients import grpc_inputs
from loadtest.locust_support import LocustSettings, http_requests, http_variant
from loadtest.server import GatewayProcess
from tests.loadtest.conftest import tiny_payloads

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"


def test_locustfile_compiles() -> None:
    py_compile.compile(str(LOCUSTFILE), doraise=True)


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
