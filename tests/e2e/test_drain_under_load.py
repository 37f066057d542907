"""SIGTERM under open-loop load over HTTP and gRPC at once: every request the gateway accepted is answered
correctly, later ones are refused with 503 / UNAVAILABLE by the gateway or never get a connection, nothing
else happens, and the process exits 0 within ``--exit-timeout-secs``.

(``test_e2e_lifecycle.py`` drains a handful of queued requests on an idle gateway; this one keeps sending
while the gateway stops.) A request that meets a closed or reset connection before any byte of an answer
was never read by the gateway (uvicorn closes only idle connections, the gRPC server refuses new calls
once stopping): those are counted apart, and they may only happen after the signal.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import tritonclient.grpc.aio as tga
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.e2e.support import GatewayProcess, tiny_batch
from tests.e2e.test_e2e_scheduling import grpc_inputs, http_inputs
from tests.fixtures.tinyrepo import build_tiny_repository, tiny_reference

EXIT_TIMEOUT_S = 5.0
INTERVAL_S = 0.01  # per sender: open loop, a new request every 10 ms whatever the answers do
SENDERS = 2  # per protocol
LOAD_BEFORE_S, LOAD_AFTER_S = 1.5, 1.0
GRACE_S = 0.05  # a request sent this long before the signal has been read by the gateway
NOT_CONNECTED = ("failed to connect", "Connection refused", "GOAWAY")  # gRPC's words for "no server there"


def outcome(error: BaseException | None, ids: np.ndarray, mask: np.ndarray, result: Any) -> str:
    if error is None:
        expected = tiny_reference(ids, mask)
        np.testing.assert_allclose(result.as_numpy("embedding"), expected, rtol=1e-5, atol=1e-6)
        return "answered"
    if isinstance(error, InferenceServerException):
        status, message = str(error.status()), error.message() or ""
        if status in ("503", "StatusCode.UNAVAILABLE") and "shutting down" in message:
            return "refused"  # by the gateway: not accepting any more
        if status == "StatusCode.UNAVAILABLE" and any(s in message for s in NOT_CONNECTED):
            return "not_connected"  # the gRPC transport found no server to take the call
    if isinstance(error, aiohttp.ClientConnectorError):
        return "not_connected"  # connection refused: the listener is closed
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        return "closed_unread"  # an idle keep-alive connection closed before the request was read
    if isinstance(error, InferenceServerException):
        return f"error: {error.status()} {error.message()!r}"
    return f"error: {error!r}"


async def test_sigterm_under_load_loses_no_accepted_request(tmp_path: Path) -> None:
    repo = build_tiny_repository(
        tmp_path / "repo", variants=("fp32",), classifier=False, max_queue_delay_us=20_000
    )
    # draining is under test, not shedding: no queue timeout, so a busy machine cannot refuse with 429
    args = ["--exit-timeout-secs", str(EXIT_TIMEOUT_S), "--default-queue-timeout-ms", "0"]
    gw = GatewayProcess(repo, tmp_path / "gw.log", args).start()
    assert gw.proc is not None
    results: list[tuple[str, float, str]] = []  # (protocol, sent at, outcome)
    inflight: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()

    async def one(protocol: str, client: Any, seq: int) -> None:
        ids, mask = tiny_batch(1 + seq % 3, 3 + seq % 5, seed=seq)
        sent = time.monotonic()
        try:
            if protocol == "http":
                result = await client.infer("tiny", http_inputs(ids, mask))
            else:
                result = await client.infer("tiny", grpc_inputs(ids, mask), client_timeout=30)
            results.append((protocol, sent, outcome(None, ids, mask, result)))
        except Exception as e:  # noqa: BLE001 - classified, and anything unexpected fails the test
            results.append((protocol, sent, outcome(e, ids, mask, None)))

    async def sender(protocol: str, client: Any, first: int) -> None:
        seq, next_at = first, time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(one(protocol, client, seq))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            seq += 1000
            next_at += INTERVAL_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    try:
        async with tha.InferenceServerClient(gw.http) as http, tga.InferenceServerClient(gw.grpc) as grpc:
            senders = [asyncio.create_task(sender("http", http, i)) for i in range(SENDERS)]
            senders += [asyncio.create_task(sender("grpc", grpc, 500 + i)) for i in range(SENDERS)]
            await asyncio.sleep(LOAD_BEFORE_S)  # load, not readiness: the gateway is ready already
            signalled = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(LOAD_AFTER_S)
            stop.set()
            await asyncio.gather(*senders)
            await asyncio.gather(*inflight)
            code = await asyncio.to_thread(gw.proc.wait, EXIT_TIMEOUT_S + 5)
            exited_s = time.monotonic() - signalled
    finally:
        gw.kill()
    counts = Counter(o for _, _, o in results)
    by_protocol = Counter((p, o) for p, _, o in results)
    assert code == 0, gw.log()
    assert exited_s <= EXIT_TIMEOUT_S + 2.0, exited_s
    assert [o for o in counts if o.startswith("error")] == [], counts
    before = [o for _, sent, o in results if sent < signalled - GRACE_S]
    # Sent before the signal: answered; or, when the gateway had not read it yet (on a busy machine gRPC
    # calls wait in the transport before the application takes them), refused with UNAVAILABLE "shutting
    # down": a clear answer, never a cancellation or silence. What the gateway took is answered, correctly.
    # "Sent" is stamped when this process starts the call; on a starved machine the bytes can leave after
    # the listener closed (not_connected): the gateway never saw those.
    assert before and set(before) <= {"answered", "refused", "not_connected"}, Counter(before)
    assert before.count("answered") >= 0.8 * len(before), Counter(before)
    late_unread = [sent - signalled for _, sent, o in results if o == "closed_unread" and sent < signalled]
    assert all(d > -GRACE_S for d in late_unread), late_unread
    for protocol in ("http", "grpc"):  # both protocols were answered, and both stopped taking requests
        assert by_protocol[(protocol, "answered")] > 50, by_protocol
        assert by_protocol[(protocol, "refused")] + by_protocol[(protocol, "not_connected")] > 0, by_protocol
    print(f"\ndrain under load: {dict(by_protocol)}; exit {exited_s:.2f} s after SIGTERM")
