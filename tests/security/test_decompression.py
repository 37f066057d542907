"""The request-body limit holds after decompression: gzip and deflate bombs are refused with 413 at the
limit without being inflated (the gateway's peak resident memory does not rise by the inflated size), a
second gzip member or bytes after the stream are refused rather than silently dropped, a body compressed
twice is inflated once, and ordinary compressed requests still work. A calibration run on a gateway
whose limit admits the bomb shows the same measurement does see a full inflation."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from tests.e2e.support import GatewayProcess, infer_inputs, run_gateway, tiny_batch
from tests.fixtures.tinyrepo import tiny_reference
from tests.security.support import peak_rss_bytes, raw_post

LIMIT = 1 << 20
BOMB = 128 << 20  # inflated size: 128 MiB of zeros, about 125 kB on the wire
TOO_LARGE = f"decompressed request body exceeds the limit of {LIMIT} bytes"
INFER = "/v2/models/tiny/infer"


def zeros(size: int, wbits: int) -> bytes:
    """``size`` zero bytes compressed (wbits 31: gzip, 15: zlib/deflate), built without holding them."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = bytes(1 << 20)
    out = [c.compress(chunk) for _ in range(size >> 20)]
    return b"".join([*out, c.flush()])


def json_request() -> bytes:
    ids, mask = tiny_batch(1, 4, seed=2)
    inputs = [
        {"name": n, "datatype": "INT64", "shape": list(a.shape), "data": a.ravel().tolist()}
        for n, a in (("input_ids", ids), ("attention_mask", mask))
    ]
    return json.dumps({"inputs": inputs}).encode()


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {"gzip": zeros(BOMB, 31), "deflate": zeros(BOMB, 15), "small": zeros(10_000_000, 31)}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from run_gateway(tmp_path_factory.mktemp("bombs"), ["--max-request-bytes", str(LIMIT)])


def post(gw: GatewayProcess, body: bytes, encoding: str) -> tuple[int, object]:
    return raw_post(gw.http, INFER, body, {"Content-Encoding": encoding, "Content-Type": "application/json"})


def test_bombs_are_refused_at_the_limit_without_inflating(
    gateway: GatewayProcess, bombs: dict[str, bytes]
) -> None:
    assert max(len(b) for b in bombs.values()) < LIMIT // 2  # all well under the limit on the wire
    assert post(gateway, gzip.compress(json_request()), "gzip")[0] == 200  # warm: the baseline is served
    before = peak_rss_bytes(gateway.pid)
    for name, encoding in (("small", "gzip"), ("gzip", "gzip"), ("deflate", "deflate")):
        for _ in range(3):
            assert post(gateway, bombs[name], encoding) == (413, {"error": TOO_LARGE}), name
    tail = bombs["gzip"]
    cases = {
        "a second member after a complete request": gzip.compress(json_request()) + tail,
        "a second member after a tiny one": gzip.compress(b"{}") + tail,
        "bytes after a deflate stream": zlib.compress(json_request()) + b"trailing",
    }
    for what, body in cases.items():
        encoding = "deflate" if "deflate" in what else "gzip"
        status, reply = post(gateway, body, encoding)
        assert status == 400 and isinstance(reply, dict), what
        assert f"bytes after the end of its {encoding} data" in reply["error"], what
    status, reply = post(gateway, gzip.compress(bombs["gzip"]), "gzip")  # compressed twice: inflated once
    assert status == 400 and isinstance(reply, dict) and "malformed JSON" in reply["error"]
    status, reply = post(gateway, gzip.compress(json_request())[:-12], "gzip")
    assert (status, reply) == (400, {"error": "request body is truncated gzip data"})
    rise = peak_rss_bytes(gateway.pid) - before
    assert rise < 32 << 20, f"peak RSS rose by {rise >> 20} MiB"
    ids, mask = tiny_batch(2, 5, seed=1)
    with th.InferenceServerClient(gateway.http) as client:
        for algorithm in ("gzip", "deflate"):
            result = client.infer(
                "tiny", infer_inputs(th, ids, mask), request_compression_algorithm=algorithm
            )
            embedding = result.as_numpy("embedding")
            np.testing.assert_allclose(embedding, tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)


def test_grpc_messages_are_bounded_after_decompression(gateway: GatewayProcess) -> None:
    """grpc itself checks the limit on the inflated message: 32 MiB of ones, gzip-compressed by the
    client to a few kB, is RESOURCE_EXHAUSTED and the peak memory barely moves."""
    ones = np.ones((1, 1 << 21), dtype=np.int64)
    before = peak_rss_bytes(gateway.pid)
    with tg.InferenceServerClient(gateway.grpc) as client:
        with pytest.raises(InferenceServerException) as refused:
            client.infer("tiny.fp32", infer_inputs(tg, ones, ones), compression_algorithm="gzip")
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "Decompressed message larger than max" in str(refused.value.message())
        ids, mask = tiny_batch(1, 4, seed=8)
        result = client.infer("tiny.fp32", infer_inputs(tg, ids, mask), compression_algorithm="gzip")
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )
    assert peak_rss_bytes(gateway.pid) - before < 16 << 20


def test_calibration_a_full_inflation_shows(
    tmp_path_factory: pytest.TempPathFactory, bombs: dict[str, bytes]
) -> None:
    """With a limit above the bomb's inflated size the gateway must inflate it, and the peak rises by
    about that much: the measurement above would have seen it."""
    for gw in run_gateway(tmp_path_factory.mktemp("calibration"), ["--max-request-bytes", str(2 * BOMB)]):
        before = peak_rss_bytes(gw.pid)
        status, reply = post(gw, bombs["gzip"], "gzip")
        assert status == 400 and isinstance(reply, dict) and "malformed JSON" in reply["error"]
        assert peak_rss_bytes(gw.pid) - before > BOMB * 3 // 4
