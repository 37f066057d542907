"""The Triton fleet (``gateway.backends.triton``) against two real tritonservers (``conftest.pair``): A has
``clf.fp32``, B does not. Outputs equal local onnxruntime; load spreads over both (by each Triton's own
statistics); a variant never goes where it is not READY; a killed server under load costs no call and
rejoins on restart; a SIGSTOPped one is cut off by the attempt timeout; circuits open and close. The tests
that stop or kill a server come last and bring it back on the same port.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as grpc_aio
from prometheus_client import CollectorRegistry, generate_latest

from gateway.backends.triton import (
    FleetConfig,
    NoServerReady,
    RemoteFailed,
    RemoteRejected,
    TritonFleet,
    TritonRunner,
)
from tests.e2e.support import metric_value, tiny_batch, until
from tests.fixtures.tinyrepo import POISON_ID
from tests.fixtures.triton_pair import Pair, served

Feeds = dict[str, np.ndarray]
TINY_OUT = ("embedding", "token_embeddings")
CLF_OUT = ("logits", "probs")


def tiny_feeds(seed: int = 0, rows: int = 2, length: int = 5) -> Feeds:
    ids, mask = tiny_batch(rows, length, seed=seed, pad=1)
    return {"input_ids": ids, "attention_mask": mask}


def clf_feeds(seed: int = 0) -> Feeds:
    return {"x": np.random.default_rng(seed).normal(size=(3, 4)).astype(np.float32)}


def local(pair: Pair, model: str, feeds: Feeds) -> Feeds:
    path = pair.source / model / "1" / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def assert_same(got: Feeds, want: Feeds) -> None:
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        assert np.abs(expected).max() > 0, f"{name}: the reference is all zeros"
        np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)


def metric(fleet_registry: CollectorRegistry, name: str, **labels: str) -> float:
    return metric_value(generate_latest(fleet_registry).decode(), name, **labels)


async def until_true(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    async def check() -> bool:
        return condition()

    await until(check, timeout_s, what)


def circuits(fleet: TritonFleet) -> dict[str, str]:
    return {s.address: s.circuit for s in fleet.states()}


class Fleet:
    """A started fleet over the pair's gRPC (or HTTP) ports with a registry of its own."""

    def __init__(self, pair: Pair, protocol: str = "grpc", **options: Any) -> None:
        urls = [(s.grpc_url if protocol == "grpc" else s.http_url) for s in (pair.a, pair.b)]
        self.a, self.b = urls
        self.registry = CollectorRegistry()
        self.fleet = TritonFleet(
            FleetConfig.parse(",".join(urls), protocol=protocol, **options), self.registry
        )

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.registry, name, **labels)


@pytest.fixture
async def fleet(pair: Pair) -> AsyncIterator[Fleet]:
    made = Fleet(pair, health_interval_s=0.25, health_timeout_s=0.5)
    await made.fleet.start()
    yield made
    await made.fleet.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_outputs_equal_onnxruntime(pair: Pair, protocol: str) -> None:
    made = Fleet(pair, protocol)
    await made.fleet.start()
    try:
        for seed in range(3):
            feeds = tiny_feeds(seed, rows=seed + 1)
            assert_same(await made.fleet.infer("tiny.fp32", feeds, TINY_OUT), local(pair, "tiny.fp32", feeds))
        runner = TritonRunner(made.fleet, "clf.fp32", CLF_OUT)
        feeds = clf_feeds()
        assert_same(await runner.infer(feeds), local(pair, "clf.fp32", feeds))
        assert runner.calibration == {}
        assert made.metric("varigate_backend_server_requests_total", server=made.a, model="clf.fp32") == 1
    finally:
        await made.fleet.close()
        await made.fleet.close()  # idempotent


async def test_concurrent_requests_spread_over_both_servers(pair: Pair, fleet: Fleet) -> None:
    before = (await served(pair.a, "tiny.fp32"), await served(pair.b, "tiny.fp32"))
    feeds = [tiny_feeds(i) for i in range(40)]
    got = await asyncio.gather(*(fleet.fleet.infer("tiny.fp32", f, TINY_OUT) for f in feeds))
    after = (await served(pair.a, "tiny.fp32"), await served(pair.b, "tiny.fp32"))
    on_a, on_b = after[0] - before[0], after[1] - before[1]
    assert on_a + on_b == 40 and on_a >= 8 and on_b >= 8, (on_a, on_b)
    assert fleet.metric("varigate_backend_server_requests_total", server=fleet.a) == on_a
    assert fleet.metric("varigate_backend_server_requests_total", server=fleet.b) == on_b
    assert_same(got[7], local(pair, "tiny.fp32", feeds[7]))
    assert all(fleet.fleet.latency_s(s, "tiny.fp32") for s in (fleet.a, fleet.b))
    assert [s.outstanding for s in fleet.fleet.states()] == [0, 0]
    assert fleet.fleet.free_slots("tiny.fp32") == 4


async def test_a_server_without_the_variant_never_gets_it(pair: Pair, fleet: Fleet) -> None:
    assert fleet.fleet.ready_for("clf.fp32") == (fleet.a,)
    assert fleet.fleet.ready_for("tiny.int8") == (fleet.a, fleet.b)
    states = {s.address: s for s in fleet.fleet.states()}
    assert states[fleet.b].ready == ("tiny.fp32", "tiny.int8")
    before = await served(pair.a, "clf.fp32")
    got = await asyncio.gather(*(fleet.fleet.infer("clf.fp32", clf_feeds(i), CLF_OUT) for i in range(16)))
    assert await served(pair.a, "clf.fp32") - before == 16
    async with grpc_aio.InferenceServerClient(pair.b.grpc_url) as client:
        stats: Any = await client.get_inference_statistics()
        index: Any = await client.get_model_repository_index()
    assert "clf.fp32" not in {m.name for m in stats.model_stats} | {m.name for m in index.models}
    assert fleet.metric("varigate_backend_server_requests_total", server=fleet.b, model="clf.fp32") == 0
    assert_same(got[3], local(pair, "clf.fp32", clf_feeds(3)))


async def test_config_errors_and_refusals(pair: Pair, fleet: Fleet) -> None:
    with pytest.raises(ValueError, match=r"entry 2: Triton server 'localhost' is not 'host:port'"):
        FleetConfig.parse("127.0.0.1:8001,localhost")
    with pytest.raises(ValueError, match=r"entry 2 is empty"):
        FleetConfig.parse("127.0.0.1:8001,")
    with pytest.raises(ValueError, match=r"'h:70000'"):
        FleetConfig.parse("h:70000")
    with pytest.raises(ValueError, match=r"name a server twice"):
        FleetConfig.parse("h:1,h:1")
    assert FleetConfig.parse(" h:1 , [::1]:2 ", slots_per_server=3).servers == ("h:1", "[::1]:2")
    with pytest.raises(NoServerReady, match=r"'tiny\.fp64'") as refused:
        await fleet.fleet.infer("tiny.fp64", tiny_feeds(), TINY_OUT)
    assert fleet.a in str(refused.value) and fleet.b in str(refused.value)
    assert fleet.fleet.free_slots("tiny.fp64") == 0
    # an SLO deadline is soft: a batch already late is still sent, and answered
    late = await fleet.fleet.infer("tiny.fp32", tiny_feeds(), TINY_OUT, deadline_ns=time.monotonic_ns() - 1)
    assert_same(late, local(pair, "tiny.fp32", tiny_feeds()))
    with pytest.raises(RemoteRejected, match=r"INVALID_ARGUMENT.*'nope'"):
        await fleet.fleet.infer("tiny.fp32", {**tiny_feeds(), "nope": np.zeros((2, 5), np.int64)}, TINY_OUT)
    rejected = [
        fleet.metric("varigate_backend_server_errors_total", server=s, reason="rejected")
        for s in (fleet.a, fleet.b)
    ]
    assert sorted(rejected) == [0, 1]  # one attempt, not retried
    assert (
        sum(fleet.metric("varigate_backend_server_retries_total", server=s) for s in (fleet.a, fleet.b)) == 0
    )
    assert set(circuits(fleet.fleet).values()) == {"closed"}


def poison() -> Feeds:
    feeds = tiny_feeds()
    feeds["input_ids"][0, 0] = POISON_ID  # Triton takes it; onnxruntime fails the batch: INTERNAL
    return feeds


async def test_circuit_opens_after_failures_and_a_probe_closes_it(pair: Pair) -> None:
    # no health rounds after start (interval 60 s): the half-open trial is a request
    made = Fleet(pair, health_interval_s=60, breaker_failures=2, breaker_open_s=0.5)
    await made.fleet.start()
    try:
        for _ in range(2):
            with pytest.raises(RemoteFailed, match=r"every attempt failed") as failed:
                await made.fleet.infer("tiny.fp32", poison(), TINY_OUT)
            assert made.a in str(failed.value) and made.b in str(failed.value)
        assert circuits(made.fleet) == {made.a: "open", made.b: "open"}
        assert made.metric("varigate_backend_server_circuit_state", server=made.a) == 2
        assert made.metric("varigate_backend_server_errors_total", server=made.b, reason="internal") == 2
        assert made.fleet.ready_for("tiny.fp32") == ()
        with pytest.raises(NoServerReady, match=r"circuit open"):
            await made.fleet.infer("tiny.fp32", tiny_feeds(), TINY_OUT)
        await until_true(lambda: set(circuits(made.fleet).values()) == {"half_open"}, 5, "half-open circuits")
        await made.fleet.infer("tiny.fp32", tiny_feeds(), TINY_OUT)  # the trial closes one of them
        assert sorted(circuits(made.fleet).values()) == ["closed", "half_open"]
        gauges = [made.metric("varigate_backend_server_circuit_state", server=s) for s in (made.a, made.b)]
        assert sorted(gauges) == [0, 1]
    finally:
        await made.fleet.close()
    # with health rounds, a successful probe closes a half-open circuit without any request
    made = Fleet(pair, health_interval_s=0.2, breaker_failures=2, breaker_open_s=0.5)
    await made.fleet.start()
    try:
        for _ in range(2):
            with pytest.raises(RemoteFailed):
                await made.fleet.infer("tiny.fp32", poison(), TINY_OUT)
        assert set(circuits(made.fleet).values()) == {"open"}
        await until_true(
            lambda: set(circuits(made.fleet).values()) == {"closed"}, 5, "probes closing circuits"
        )
        assert made.metric("varigate_backend_server_requests_total", server=made.a) == 2
    finally:
        await made.fleet.close()


async def test_a_stopped_server_is_cut_off_and_recovers(pair: Pair, fleet: Fleet) -> None:
    # without health rounds (interval 60 s) only the attempt timeout can cut the stopped server off
    slow = Fleet(pair, health_interval_s=60, min_attempt_s=0.3)
    await slow.fleet.start()
    pair.a.signal_group(signal.SIGSTOP)
    try:
        # with health rounds, attempts in flight on a server found down are cut off at once
        feeds = [tiny_feeds(i, rows=3) for i in range(4)]
        took_s, got = await timed_gather(fleet.fleet, feeds, deadline_s=3.0)
        assert took_s < 2.0, took_s
        assert fleet.metric("varigate_backend_server_retries_total", server=fleet.a) >= 1
        for out, f in zip(got, feeds, strict=True):
            assert_same(out, local(pair, "tiny.fp32", f))
        assert [s.up for s in fleet.fleet.states()] == [False, True]
        # the fleet without rounds still believes A up: its attempts there end at their cap, deadline 1.5 s
        # minus the retry's reserve (min_attempt_s), and B answers them inside the deadline
        feeds = [tiny_feeds(i) for i in range(4)]
        took_s, got = await timed_gather(slow.fleet, feeds, deadline_s=1.5)
        assert 1.0 < took_s < 1.5, took_s
        assert slow.metric("varigate_backend_server_retries_total", server=slow.a) >= 1
        assert slow.metric("varigate_backend_server_errors_total", server=slow.a, reason="timeout") >= 1
        for out, f in zip(got, feeds, strict=True):
            assert_same(out, local(pair, "tiny.fp32", f))
    finally:
        pair.a.signal_group(signal.SIGCONT)
        await slow.fleet.close()
    await until_true(lambda: fleet.fleet.ready_for("tiny.fp32") == (fleet.a, fleet.b), 10, "A back")
    before = await served(pair.a, "tiny.fp32")
    await asyncio.gather(*(fleet.fleet.infer("tiny.fp32", tiny_feeds(i), TINY_OUT) for i in range(8)))
    assert await served(pair.a, "tiny.fp32") > before


async def timed_gather(
    fleet: TritonFleet, feeds: list[Feeds], deadline_s: float
) -> tuple[float, list[Feeds]]:
    """Every batch of ``feeds`` at once with one deadline ``deadline_s`` away: seconds taken, outputs."""
    t0 = time.monotonic()
    deadline_ns = time.monotonic_ns() + int(deadline_s * 1e9)
    got = await asyncio.gather(
        *(fleet.infer("tiny.fp32", f, TINY_OUT, deadline_ns=deadline_ns) for f in feeds)
    )
    return time.monotonic() - t0, got


async def test_a_killed_server_costs_no_call_and_rejoins(pair: Pair) -> None:
    made = Fleet(pair, health_interval_s=1.0)  # slow rounds: some attempts meet the dead server first
    await made.fleet.start()
    calls: list[asyncio.Task[dict[str, np.ndarray]]] = []
    try:
        for i in range(60):  # ~20 requests/s for ~3 s, two at a time; B killed after ~1 s
            calls.append(asyncio.create_task(made.fleet.infer("tiny.fp32", tiny_feeds(i), TINY_OUT)))
            if i == 20:
                pair.b.kill()
            if i % 2:
                await asyncio.sleep(0.1)
        got = await asyncio.gather(*calls)
        assert_same(got[41], local(pair, "tiny.fp32", tiny_feeds(41)))
        await until_true(lambda: made.metric("varigate_backend_server_up", server=made.b) == 0, 5, "B down")
        assert made.metric("varigate_backend_server_errors_total", server=made.b, reason="unavailable") >= 1
        assert made.metric("varigate_backend_server_retries_total", server=made.b) >= 1
        assert made.fleet.ready_for("tiny.fp32") == (made.a,)
        pair.b.start()  # the same ports
        await until_true(lambda: made.fleet.ready_for("tiny.fp32") == (made.a, made.b), 10, "B back")
        assert made.metric("varigate_backend_server_up", server=made.b) == 1
        await asyncio.gather(*(made.fleet.infer("tiny.fp32", tiny_feeds(i), TINY_OUT) for i in range(8)))
        assert await served(pair.b, "tiny.fp32") >= 1  # the new process answered
    finally:
        for call in calls:
            call.cancel()
        await made.fleet.close()
        if pair.b.proc is None or pair.b.proc.poll() is not None:
            pair.b.start()
