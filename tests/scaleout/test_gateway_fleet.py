"""The gateway in front of two real tritonservers (``--triton-servers A,B``): A serves ``tiny.fp32`` and
``tiny.int8``, B only ``tiny.fp32``. Requests go through the gateway over KServe v2 HTTP (tritonclient);
what reached each Triton is read from that Triton's own statistics. Remote outputs equal the numpy
reference; load spreads over both servers; int8 never reaches B; a killed server costs no request and
shows in the gateway's metrics, and rejoins when restarted; a SIGSTOPped one is cut off by the deadline and
the batch answered by the other; with ``--placement both`` batches stay local while the local cores keep
up and overflow to the servers in a burst they cannot.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Generator, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as th
import tritonclient.http.aio as tha

from tests.e2e.support import GatewayProcess, infer_inputs, tiny_batch, until
from tests.fixtures.tinyrepo import build_tiny_repository, tiny_reference
from tests.fixtures.triton_pair import Pair, served, start_pair
from tests.gateway.policy.conftest import PAIR
from tests.gateway.policy.support import DELAYS, Reply, one, open_loop

MODELS_A = ["tiny.fp32", "tiny.int8"]
MODELS_B = ["tiny.fp32"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the cards claim PairBackend's delays; Triton runs the same models at their real (far faster) speed
    return build_tiny_repository(
        tmp_path_factory.mktemp("scaleout") / "src", delays_ms=DELAYS, classifier=False, instance_count=0
    )


@pytest.fixture(scope="module")
def pair(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    yield from start_pair(source, tmp_path_factory.mktemp("tritons"), MODELS_A, MODELS_B)


def _gateway(source: Path, tmp: Path, pair: Pair, *args: str) -> Generator[GatewayProcess, None, None]:
    servers = f"127.0.0.1:{pair.a.grpc_port},127.0.0.1:{pair.b.grpc_port}"
    gw = GatewayProcess(
        source, tmp / "gateway.log", ["--triton-servers", servers, "--shadow-fraction", "0", *args]
    )
    try:
        yield gw.start()
    finally:
        gw.kill()


@pytest.fixture(scope="module")
def remote(source: Path, pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from _gateway(source, tmp_path_factory.mktemp("remote"), pair, "--placement", "remote")


def _server_label(port: int) -> str:
    return f"127.0.0.1:{port}"


async def test_remote_outputs_equal_the_reference_and_spread_over_both_servers(
    remote: GatewayProcess, pair: Pair
) -> None:
    before = [await served(s, "tiny.fp32") for s in (pair.a, pair.b)]
    async with tha.InferenceServerClient(remote.http, conn_limit=64) as client:
        ids, mask = tiny_batch(3, 6, seed=7, pad=2)
        result = await client.infer("tiny.fp32", infer_inputs(th, ids, mask))
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(ids, mask), rtol=1e-5, atol=1e-6
        )
        replies = []
        for burst in range(10):  # 16 at once: more batches than one server has in flight
            replies += await asyncio.gather(*(_one(client, 16 * burst + i) for i in range(16)))
    assert [r.status for r in replies] == ["ok"] * len(replies)
    after = [await served(s, "tiny.fp32") for s in (pair.a, pair.b)]
    grew = [a - b for a, b in zip(after, before, strict=True)]
    assert min(grew) >= 0.2 * sum(grew), grew  # least-outstanding balancing uses both servers
    assert remote.metric("varigate_backend_server_requests_total", server=_server_label(pair.b.grpc_port)) > 0


async def test_a_server_without_the_variant_never_receives_it(remote: GatewayProcess, pair: Pair) -> None:
    async with tha.InferenceServerClient(remote.http, conn_limit=64) as client:
        replies = await open_loop(client, "tiny.int8", [(1.0, 30.0)], 2)
    assert [r.status for r in replies] == ["ok"] * len(replies)
    assert await served(pair.a, "tiny.int8") >= len(replies) and await served(pair.b, "tiny.int8") == 0


async def test_a_killed_server_costs_no_request_and_rejoins_when_restarted(
    remote: GatewayProcess, pair: Pair
) -> None:
    b = _server_label(pair.b.grpc_port)
    async with tha.InferenceServerClient(remote.http, conn_limit=64) as client:
        load = asyncio.ensure_future(open_loop(client, "tiny.fp32", [(4.0, 30.0)], 2))
        await asyncio.sleep(1.5)
        pair.b.signal_group(signal.SIGKILL)
        replies = await load
        assert [r for r in replies if r.status != "ok"] == []
        await until(_up(remote, b, 0.0), 5.0, "the killed server reported down")
        pair.b.restart()
        await until(_up(remote, b, 1.0), 10.0, "the restarted server reported up")
        assert await served(pair.b, "tiny.fp32") == 0  # a new process
        replies = await open_loop(client, "tiny.fp32", [(2.0, 30.0)], 2)
    assert [r for r in replies if r.status != "ok"] == []
    assert await served(pair.b, "tiny.fp32") > 0  # it rejoined without a gateway restart


async def test_a_hung_server_is_cut_off_by_the_deadline_and_the_batch_retried_elsewhere(
    remote: GatewayProcess, pair: Pair
) -> None:
    b = _server_label(pair.b.grpc_port)
    retried = remote.metric("varigate_backend_server_retries_total", server=b)
    pair.b.signal_group(signal.SIGSTOP)
    try:
        async with tha.InferenceServerClient(remote.http, conn_limit=64) as client:
            replies = await asyncio.gather(
                *(_one(client, seed) for seed in range(8))
            )  # concurrent: the least outstanding server is B for some of them
    finally:
        pair.b.signal_group(signal.SIGCONT)
    assert [r.status for r in replies] == ["ok"] * 8
    assert max(r.latency_s for r in replies) < 1.0, [round(r.latency_s, 3) for r in replies]  # the SLO
    assert (
        remote.metric("varigate_backend_server_retries_total", server=b) > retried
        or remote.metric("varigate_backend_server_up", server=b) == 0.0
    )  # cut off mid-attempt and retried, or already seen down by the health check


async def test_placement_both_stays_local_while_the_cores_keep_up_and_overflows_in_a_burst(
    source: Path, pair: Pair, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Locally fp32 takes 40 ms + 20 ms a row and int8 8 ms + 2 ms a row on two slots (PairBackend):
    8-row requests at 3/s fit locally; at 150/s even int8 keeps up with about 80/s, so with an SLO of
    300 ms the rest must go to the servers."""
    gen = _gateway(source, tmp_path_factory.mktemp("both"), pair, "--placement", "both", "--backend", PAIR)
    gw = next(gen)
    try:
        async with tha.InferenceServerClient(gw.http, conn_limit=400) as client:
            warm = await open_loop(client, "tiny", [(1.0, 5.0)], 8, slo_ms=300)
            assert [r.status for r in warm] == ["ok"] * len(warm)
            start = await _remote_rows(pair)
            light = await open_loop(client, "tiny", [(2.0, 3.0)], 8, slo_ms=300)
            after_light = await _remote_rows(pair)
            burst = await open_loop(client, "tiny", [(2.0, 150.0)], 8, slo_ms=300)
            after_burst = await _remote_rows(pair)
    finally:
        gen.close()
    assert [r for r in light + burst if r.status != "ok"] == []
    assert after_light - start <= 0.1 * 8 * len(light), (after_light - start, len(light))
    overflowed = (after_burst - after_light) / (8 * len(burst))
    assert overflowed >= 0.2, overflowed
    assert _attainment(burst) >= 0.9, _attainment(burst)


async def _one(client: tha.InferenceServerClient, seed: int) -> Reply:
    return await one(client, "tiny.fp32", seed, 0.0, 2, slo_ms=1000)


def _up(gw: GatewayProcess, server: str, value: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return gw.metric("varigate_backend_server_up", server=server) == value

    return check


async def _remote_rows(pair: Pair) -> int:
    total = 0
    for s in (pair.a, pair.b):
        for model in ("tiny.fp32", "tiny.int8"):
            total += await served(s, model, rows=True)
    return total


def _attainment(replies: list[Reply]) -> float:
    return sum(r.status == "ok" and bool(r.slo_met) for r in replies) / max(1, len(replies))
