"""Ground-truth labels are an API group of their own (``labels``): a gateway can take inference from any
client and labels only from one that holds the key. The key is compared in constant time; every wrong
or missing key is the same 403."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.grpc import service_pb2

from gateway.core.errors import PermissionDenied
from gateway.protocol.restricted import API_GROUPS, GRPC_HEADER_PREFIX, Restrictions, parse_restriction
from tests.e2e.support import GatewayProcess, run_gateway

HEADER, SECRET = "label-key", "s3cret-Value"
REFUSED = {"error": f"This API is restricted, expecting header '{HEADER}'"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    spec = f"labels:{HEADER}={SECRET}"
    yield from run_gateway(
        tmp_path_factory.mktemp("labels"),
        ["--http-restricted-api", spec, "--grpc-restricted-protocol", spec],
        classifier_card=True,  # clf.fp32 is a classifier: its answers can be labelled
    )


def lookup(headers: dict[str, str]) -> Callable[[str], str | None]:
    return headers.get


def _x(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(1, 4)).astype(np.float32)


def classify_http(gw: GatewayProcess, request_id: str, seed: int) -> int:
    item = th.InferInput("x", [1, 4], "FP32")
    item.set_data_from_numpy(_x(seed))
    with th.InferenceServerClient(gw.http) as client:  # no header at all
        return int(np.argmax(client.infer("clf", [item], request_id=request_id).as_numpy("logits")))


def classify_grpc(gw: GatewayProcess, request_id: str, seed: int) -> int:
    item = tg.InferInput("x", [1, 4], "FP32")
    item.set_data_from_numpy(_x(seed))
    with tg.InferenceServerClient(gw.grpc) as client:  # no metadata at all
        result = client.infer("clf", [item], request_id=request_id)
        logits = result.as_numpy("logits")
        assert logits is not None
        return int(np.argmax(logits))


def test_labels_need_the_key_while_inference_does_not(gateway: GatewayProcess) -> None:
    predicted = [classify_http(gateway, f"h{i}", i) for i in range(2)]
    predicted += [classify_grpc(gateway, f"g{i}", 10 + i) for i in range(2)]
    ids = ["h0", "h1", "g0", "g1"]
    truth = [p if i < 3 else (p + 1) % 3 for i, p in enumerate(predicted)]  # 3 of 4 right
    body = {"labels": [{"id": i, "label": t} for i, t in zip(ids, truth, strict=True)]}
    url = f"http://{gateway.http}/v2/models/clf/labels"
    wrong: list[dict[str, str]] = [
        {},  # no header
        {HEADER: ""},
        {HEADER: "s"},  # shorter
        {HEADER: SECRET[:-1]},  # a prefix
        {HEADER: SECRET + "x"},  # longer
        {HEADER: SECRET.upper()},  # values are case-sensitive
        {HEADER: SECRET[:-1] + "X"},  # same length, last byte differs
        {HEADER: "x" * 8000},
        {"other-key": SECRET},  # the right value under another name
        {GRPC_HEADER_PREFIX + HEADER: SECRET},  # the gRPC name is not the HTTP one
    ]
    with httpx.Client(timeout=30) as raw:
        for headers in wrong:
            r = raw.post(url, json=body, headers=headers)
            assert (r.status_code, r.json()) == (403, REFUSED), headers
        assert gateway.metric("varigate_labels_total", model="clf") == 0  # nothing was taken
        r = raw.post(url, json=body, headers={"Label-Key": SECRET})  # header names are case-insensitive
        assert (r.status_code, r.json()) == (200, {"accepted": 4, "unknown": []})
        r = raw.post(url, json={"labels": [{"id": "h0", "label": 0}]}, headers={HEADER: SECRET})
        assert (r.status_code, r.json()) == (200, {"accepted": 0, "unknown": ["h0"]})  # taken once
    assert gateway.metric("varigate_labels_total", model="clf", variant="clf.fp32") == 4
    accuracy = gateway.metric("varigate_live_accuracy_ratio", model="clf", variant="clf.fp32")
    assert abs(accuracy - 3 / 4) < 1e-9
    assert classify_http(gateway, "after", 99) == classify_grpc(gateway, "after-g", 99)  # inference goes on


def test_the_group_is_ours_and_grpc_has_no_labels_rpc() -> None:
    assert "labels" in API_GROUPS and "inference" in API_GROUPS
    apis, key, value = parse_restriction(f"labels,model-repository:{HEADER}={SECRET}")
    assert (apis, key, value) == (frozenset({"labels", "model-repository"}), HEADER, SECRET)
    only_inference = Restrictions.parse([f"inference:{HEADER}={SECRET}"])
    only_inference.check("labels", lookup({}))  # restricting inference no longer restricts labels
    with pytest.raises(PermissionDenied, match=HEADER):
        only_inference.check("inference", lookup({}))
    methods = [m.name for m in service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods]
    assert "ModelInfer" in methods and not [m for m in methods if "label" in m.lower()]


def test_wrong_keys_of_every_length_are_refused_alike() -> None:
    """The check itself, over the same inputs the gateway saw: the missing header, empty, shorter,
    longer, same length, and non-ASCII values all raise the same error; only the exact value passes."""
    rules = Restrictions.parse([f"labels:{HEADER}={SECRET}"])
    for got in (None, "", "s", SECRET[:-1], SECRET + "\0", SECRET[:-1] + "X", "é" * len(SECRET), "x" * 10**6):
        with pytest.raises(PermissionDenied) as refused:
            rules.check("labels", lookup({HEADER: got} if got is not None else {}))
        assert refused.value.message == REFUSED["error"]
    rules.check("labels", lookup({HEADER: SECRET}))
