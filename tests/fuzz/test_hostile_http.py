"""Hostile HTTP inference requests, each a few bytes that once cost gigabytes or seconds: declared shapes far
beyond the data sent (JSON and binary), too many or negative dims, lying ``binary_data_size``, deep nesting,
shapes whose element count overflows int64. Each is refused with 400 within 1 s, naming the input, and the
gateway's RSS does not jump (``rss_guard``)."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.support import GatewayProcess

BOUND_S = 1.0


def _json(name: str, datatype: str, shape: list[int], data: Any) -> tuple[bytes, dict[str, str]]:
    return orjson.dumps({"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}), {}


def _binary(
    name: str, datatype: str, shape: list[int], raw: bytes, size: int | None = None
) -> tuple[bytes, dict[str, str]]:
    params = {"binary_data_size": len(raw) if size is None else size}
    head = orjson.dumps(
        {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "parameters": params}]}
    )
    return head + raw, {"inference-header-content-length": str(len(head))}


def _nested(name: str, datatype: str, depth: int, leaf: str) -> bytes:
    head = orjson.dumps({"name": name, "datatype": datatype, "shape": [1, 1]})[:-1] + b', "data": '
    return b'{"inputs": [' + head + b"[" * depth + leaf.encode() + b"]" * depth + b"}]}"


EMPTY_BYTES = struct.pack("<I", 0)  # one BYTES element of length 0: 4 bytes on the wire
CASES: dict[str, tuple[str, str, tuple[bytes, dict[str, str]]]] = {
    # id: (model, input the message must name, (body, headers))
    "json-dim-2**62": ("clf.fp32", "x", _json("x", "FP32", [2**62, 4], [1, 2, 3, 4])),
    "json-dim-2**63-1": ("clf.fp32", "x", _json("x", "FP32", [2**63 - 1], [1.0])),
    "json-100k-dims": ("clf.fp32", "x", _json("x", "FP32", [1] * 100_000, [1.0])),
    "json-negative-dim": ("clf.fp32", "x", _json("x", "FP32", [-1, 4], [1, 2, 3, 4])),
    "json-int64-overflow": ("clf.fp32", "x", _json("x", "FP32", [2**32, 2**32], [1.0])),
    "json-zero-size": ("clf.fp32", "clf.fp32", _json("x", "FP32", [0, 4], [])),  # names the model's batch
    "json-bytes-2**40": ("text.base", "text", _json("text", "BYTES", [1, 2**40], ["abcd"])),
    "binary-bytes-2**40": ("text.base", "text", _binary("text", "BYTES", [1, 2**40], EMPTY_BYTES)),
    "binary-bytes-2**31": ("text.base", "text", _binary("text", "BYTES", [2**31], EMPTY_BYTES)),
    # At the per-request element limit (2**26): only the BYTES count against the bytes present stops it.
    "binary-bytes-2**26": ("text.base", "text", _binary("text", "BYTES", [2**13, 2**13], EMPTY_BYTES)),
    "binary-bytes-int64-overflow": (
        "text.base",
        "text",
        _binary("text", "BYTES", [2**32, 2**32], EMPTY_BYTES),
    ),
    "binary-bytes-100k-dims": ("text.base", "text", _binary("text", "BYTES", [1] * 100_000, EMPTY_BYTES)),
    "binary-fp32-2**31x2**31": ("clf.fp32", "x", _binary("x", "FP32", [2**31, 2**31], b"\x00" * 8)),
    "binary-size-beyond-body": ("clf.fp32", "x", _binary("x", "FP32", [1, 4], b"\x00" * 16, size=2**40)),
    "binary-size-short": ("clf.fp32", "x", _binary("x", "FP32", [1, 4], b"\x00" * 16, size=8)),
    "bytes-length-prefix-lies": (
        "text.base",
        "text",
        _binary("text", "BYTES", [1, 1], struct.pack("<I", 2**31) + b"ab"),
    ),
}


@pytest.fixture(scope="module")
def client(fuzz_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{fuzz_gateway.http}", timeout=60) as c:
        yield c


def _post(
    client: httpx.Client, model: str, body: bytes, headers: dict[str, str]
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
    return response, time.monotonic() - started


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_request(case: str, client: httpx.Client, rss_guard: GatewayProcess) -> None:
    model, name, (body, headers) = CASES[case]
    assert len(body) < 400_000  # small requests: the cost must come from what they declare
    response, elapsed_s = _post(client, model, body, headers)
    assert response.status_code == 400, response.text[:500]
    message = response.json()["error"]
    assert f"'{name}'" in message, message
    assert elapsed_s < BOUND_S, f"{case}: answered in {elapsed_s:.2f} s"


@pytest.mark.parametrize("depth", [1000, 5000])
@pytest.mark.parametrize(
    ("model", "name", "datatype", "leaf"),
    [("clf.fp32", "x", "FP32", "1"), ("text.base", "text", "BYTES", '"a"')],
)
def test_deep_nesting(
    depth: int,
    model: str,
    name: str,
    datatype: str,
    leaf: str,
    client: httpx.Client,
    rss_guard: GatewayProcess,
) -> None:
    """Nesting within the JSON parser's limit (1024) reaches the codec, which must not recurse into a crash
    (it may take the one element, as flat data); nesting beyond it is refused by the parser with a 400."""
    response, elapsed_s = _post(client, model, _nested(name, datatype, depth, leaf), {})
    assert response.status_code in ((200, 400) if depth < 1024 else (400,)), response.text[:500]
    if response.status_code == 400:
        message = response.json()["error"]
        assert f"'{name}'" in message or "JSON" in message, message
    else:
        assert [o["shape"] for o in response.json()["outputs"]] == [[1, 1], [1, 1]], response.text
    assert elapsed_s < BOUND_S, f"depth {depth}: answered in {elapsed_s:.2f} s"
