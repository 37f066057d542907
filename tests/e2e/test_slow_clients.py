"""Slow and stalled clients: 500 sockets that connect and stall (idle TCP, slowloris headers, a partial
body, gRPC connections that never speak HTTP/2) while normal tritonclient requests keep being served
with bounded latency; the server closes every stalled socket within its configured timeout, and the
gateway's file descriptors return to their baseline."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http.aio as http_aio

from loadtest.cpu import open_fds
from tests.e2e.support import GatewayProcess, infer_inputs, run_gateway, tiny_batch
from tests.fixtures.tinyrepo import tiny_reference

TIMEOUT_S = 3.0  # header, body, keep-alive and gRPC handshake timeouts of the gateway under test
STALLED = {"idle": 150, "slowloris": 150, "partial_body": 100, "grpc_silent": 100}
MODEL = "tiny.fp32"


@pytest.fixture(scope="module")
def gateway_with_timeouts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:  # 500 stalled sockets here (the gateway raises its own limit)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    t = str(TIMEOUT_S)
    args = ["--http-header-timeout-secs", t, "--http-body-timeout-secs", t, "--http-keep-alive-secs", t]
    args += ["--grpc-handshake-timeout-secs", t, "--shadow-fraction", "0"]
    yield from run_gateway(tmp_path_factory.mktemp("slow"), args, variants=("fp32",), classifier=False)


async def _stall(kind: str, gw: GatewayProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = gw.grpc_port if kind == "grpc_silent" else gw.http_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if kind == "slowloris":
        writer.write(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())
    elif kind == "partial_body":
        writer.write(
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"inputs": ['.encode()
        )
    await writer.drain()
    return reader, writer


async def _trickle(writers: list[asyncio.StreamWriter], until: float) -> None:
    """Slowloris: one more header byte per socket every 0.5 s (an idle-read timeout alone never fires)."""
    while time.monotonic() < until:
        for w in writers:
            if not w.is_closing():
                w.write(b"a")
        await asyncio.sleep(0.5)


async def _closed_after(reader: asyncio.StreamReader, t0: float) -> tuple[float, bytes]:
    """Seconds from ``t0`` until the server closed the socket, and what it sent first."""
    data = b""
    try:
        while chunk := await reader.read(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return time.monotonic() - t0, data


async def _normal_traffic(gw: GatewayProcess, until: float) -> list[float]:
    """Alternating HTTP and gRPC infers until ``until``; their latencies (each answer checked)."""
    ids, mask = tiny_batch(1, 8, seed=5)
    expected = tiny_reference(ids, mask)
    latencies = []
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    async with http_aio.InferenceServerClient(gw.http) as h, grpc_aio.InferenceServerClient(gw.grpc) as g:
        while time.monotonic() < until:
            for client, module in ((h, httpclient), (g, grpcclient)):
                t = time.monotonic()
                result = await client.infer(MODEL, infer_inputs(module, ids, mask))
                latencies.append(time.monotonic() - t)
                np.testing.assert_allclose(result.as_numpy("embedding"), expected, atol=1e-5)
    return latencies


async def _scenario(gw: GatewayProcess) -> tuple[dict[str, list[tuple[float, bytes]]], list[float], int]:
    t0 = time.monotonic()
    socks = {k: [await _stall(k, gw) for _ in range(n)] for k, n in STALLED.items()}
    opened_s = time.monotonic() - t0
    assert opened_s < TIMEOUT_S / 2, f"opening the stalled sockets took {opened_s:.1f} s"
    end = t0 + TIMEOUT_S * 0.9  # normal requests while every stalled socket is still open
    # the gateway accepts from its listen backlog at its own pace: its fd count peaks some time after the
    # last connect() returned, so it is sampled while the stalled sockets are all still open
    sampled = asyncio.create_task(_peak_fds(gw.pid, end))
    closes = {k: [asyncio.ensure_future(_closed_after(r, t0)) for r, _ in v] for k, v in socks.items()}
    slowloris = [w for _, w in socks["slowloris"]]
    trickle = asyncio.create_task(_trickle(slowloris, t0 + 3 * TIMEOUT_S))
    latencies = await _normal_traffic(gw, end)
    peak = await sampled
    done = {k: await asyncio.wait_for(asyncio.gather(*v), 3 * TIMEOUT_S) for k, v in closes.items()}
    trickle.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await trickle  # finished before its writers close
    for v in socks.values():
        for _, w in v:
            w.close()
    return done, latencies, peak


async def _peak_fds(pid: int, until: float) -> int:
    peak = open_fds(pid)
    while time.monotonic() < until:
        await asyncio.sleep(0.05)  # sampling interval
        peak = max(peak, open_fds(pid))
    return peak


def _fds_settle(pid: int, target: int, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (n := open_fds(pid)) > target and time.monotonic() < deadline:
        time.sleep(0.1)  # polling interval
    return n


def test_stalled_clients_are_closed_and_others_served(gateway_with_timeouts: GatewayProcess) -> None:
    gw = gateway_with_timeouts
    baseline = open_fds(gw.pid)
    closed, latencies, peak = asyncio.run(_scenario(gw))

    assert peak >= baseline + 0.9 * sum(STALLED.values()), f"fds {baseline} -> {peak}: sockets not accepted"
    assert len(latencies) >= 20, f"only {len(latencies)} normal requests in {TIMEOUT_S * 0.9:.1f} s"
    assert max(latencies) < 1.0 and float(np.percentile(latencies, 50)) < 0.1, latencies
    for kind, results in closed.items():
        closed_s = [s for s, _ in results]
        assert min(closed_s) >= TIMEOUT_S * 0.8, (
            f"{kind}: closed after {min(closed_s):.2f} s, before the timeout"
        )
        assert max(closed_s) <= TIMEOUT_S + 2.0, f"{kind}: still open {max(closed_s):.2f} s after connecting"
    for kind in ("idle", "slowloris"):
        assert all(data.startswith(b"HTTP/1.1 408 ") for _, data in closed[kind]), closed[kind][0]
    assert all(data == b"" for _, data in closed["partial_body"]), (
        "a stalled body gets no answer, only a close"
    )
    after = _fds_settle(gw.pid, baseline + 2)
    assert after <= baseline + 2, f"gateway fds {baseline} before, {after} after the stalled clients left"


def test_oversized_headers_are_refused(gateway_with_timeouts: GatewayProcess) -> None:
    async def send() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway_with_timeouts.http_port)
        writer.write(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), TIMEOUT_S)
        writer.close()
        return data

    data = asyncio.run(send())
    assert data.startswith(b"HTTP/1.1 431 "), data[:100]
    assert b"Request Header Fields Too Large" in data
