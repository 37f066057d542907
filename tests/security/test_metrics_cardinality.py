"""Metric label values never come from unchecked request input: thousands of requests for made-up model
names (huge ones, quotes and newlines, bytes that are not UTF-8), over HTTP and gRPC and every per-model
endpoint, add no series to /metrics and do not grow it, while real requests are still counted."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from urllib.parse import quote

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from gateway.core.telemetry.observer import Outcome, RequestEvent
from gateway.metrics import UNKNOWN_MODEL, Metrics
from tests.e2e.support import GatewayProcess, infer_inputs, run_gateway, tiny_batch
from tests.security.support import raw_post, series

NAMES = 3000
ALPHABET = string.ascii_letters + string.digits + "._-:@ \"'\\\n\t{}=,é€😀"
SUCCESS = {"model": "tiny", "variant": "tiny.fp32", "protocol": "http", "outcome": "success"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # no shadow comparisons: one runs (5 % of answers, at random, on spare capacity) whenever it likes and
    # adds its variant's real series after the count was taken; made-up names are never routed, so never
    # shadowed, and real requests are still counted below
    yield from run_gateway(
        tmp_path_factory.mktemp("cardinality"), ["--shadow-fraction", "0"], classifier_card=True
    )


def made_up_names(rng: random.Random) -> list[str]:
    names = []
    for i in range(NAMES):
        name = "".join(rng.choices(ALPHABET, k=rng.randint(1, 48)))
        if i % 100 == 0:
            name *= 4000 // len(name) + 1  # several kilobytes
        names.append(name.strip("/") or "x")
    return names


def known_request(gw: GatewayProcess) -> None:
    ids, mask = tiny_batch(1, 4, seed=3)
    with th.InferenceServerClient(gw.http) as client:
        assert client.infer("tiny.fp32", infer_inputs(th, ids, mask)).as_numpy("embedding") is not None
    with tg.InferenceServerClient(gw.grpc) as client:
        assert client.infer("tiny.fp32", infer_inputs(tg, ids, mask)).as_numpy("embedding") is not None


def refused(status: str | None, expected: set[str], call: str) -> None:
    assert status in expected, call


def send_http(gw: GatewayProcess, names: list[str]) -> None:
    ids, mask = tiny_batch(1, 4, seed=4)
    with th.InferenceServerClient(gw.http, network_timeout=30) as client, httpx.Client(timeout=30) as raw:
        for i, name in enumerate(names):
            with pytest.raises(InferenceServerException) as e:
                match i % 4:
                    case 0:
                        client.infer(name, infer_inputs(th, ids, mask))
                    case 1:
                        client.get_model_metadata(name)
                    case 2:
                        client.get_model_config(name)
                    case _:
                        client.get_inference_statistics(name)
            refused(e.value.status(), {"404"}, f"http {i % 4} {name[:40]!r}")
            assert not client.is_model_ready(name)
            if i % 5 == 0:
                r = raw.post(f"http://{gw.http}/v2/models/{quote(name, safe='')}/labels", json={"labels": []})
                assert r.status_code == 404, name[:40]
    for path in ("/v2/models/%FF%FE%FD/infer", "/v2/models/%C0%AF/infer", "/v2/models/%ED%A0%80/labels"):
        status, body = raw_post(gw.http, path, b'{"labels": []}' if path.endswith("labels") else b"{}")
        assert status == 404 and isinstance(body, dict) and "unknown model" in body["error"], (path, body)


def send_grpc(gw: GatewayProcess, names: list[str]) -> None:
    ids, mask = tiny_batch(1, 4, seed=5)
    with tg.InferenceServerClient(gw.grpc) as client:
        for i, name in enumerate(names):
            with pytest.raises(InferenceServerException) as e:
                match i % 4:
                    case 0:
                        client.infer(name, infer_inputs(tg, ids, mask))
                    case 1:
                        client.get_model_metadata(name)
                    case 2:
                        client.get_model_config(name)
                    case _:
                        client.get_inference_statistics(name)
            refused(e.value.status(), {"StatusCode.NOT_FOUND"}, f"grpc {i % 4} {name[:40]!r}")
            assert not client.is_model_ready(name)
    # a model name that is not UTF-8 cannot be a proto3 string: refused before any lookup
    placeholder = "P" * 16
    request = service_pb2.ModelInferRequest(model_name=placeholder).SerializeToString()
    with grpc.insecure_channel(gw.grpc) as channel:
        infer: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer"
        )
        for junk in (b"\xff" * 16, b"\xc0\xaf" * 8, b"\xed\xa0\x80" * 5 + b"x"):
            with pytest.raises(grpc.RpcError) as e:
                infer(request.replace(placeholder.encode(), junk), timeout=30)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "malformed protobuf" in str(e.value.details())


def test_made_up_model_names_add_no_series(gateway: GatewayProcess) -> None:
    known_request(gateway)  # the real series exist before the count
    before_text = httpx.get(gateway.metrics_url).text
    before = series(before_text)
    names = made_up_names(random.Random(9))
    send_http(gateway, names[: NAMES // 2])
    send_grpc(gateway, names[NAMES // 2 :])
    after_text = httpx.get(gateway.metrics_url).text
    assert series(after_text) == before
    assert len(after_text) <= len(before_text) + 256  # same series, same values: same size
    served = gateway.metric("varigate_requests_total", **SUCCESS)
    known_request(gateway)  # and real requests are still counted
    assert gateway.metric("varigate_requests_total", **SUCCESS) == served + 1
    assert series(httpx.get(gateway.metrics_url).text) == before


def test_events_for_unannounced_models_share_one_bounded_label() -> None:
    """The guard in ``Metrics`` itself: model labels only name models the gateway announced, whatever a
    request event carries (the core reports only routed requests today; this keeps it so if it changes)."""
    metrics = Metrics()
    metrics.model_state("tiny.fp32", "1", True)
    rng = np.random.default_rng(11)
    for i in range(NAMES):
        name = "".join(chr(c) for c in rng.integers(32, 0x2FFF, size=int(rng.integers(1, 200))))
        outcome = Outcome.SUCCESS if i % 2 else Outcome.FAILURE
        metrics.request_done(
            RequestEvent(name, name, str(i), "http", outcome, "" if i % 2 else "not_found", 1, 0.01, 0.0, 0.0)
        )
    metrics.request_done(
        RequestEvent("tiny", "tiny.fp32", "1", "grpc", Outcome.SUCCESS, "", 1, 0.01, 0.0, 0.0)
    )
    text = metrics.render().decode()
    models = {dict(labels).get("model") for _, labels in series(text)} - {None}
    assert models == {UNKNOWN_MODEL, "tiny", "tiny.fp32"}
    assert len(text) < 20_000
    unknown = {"model": UNKNOWN_MODEL, "variant": UNKNOWN_MODEL, "protocol": "http"}
    samples = series(text)
    assert ("varigate_requests_total", tuple(sorted({**unknown, "outcome": "success"}.items()))) in samples
    assert ("varigate_requests_total", tuple(sorted({**unknown, "outcome": "not_found"}.items()))) in samples
