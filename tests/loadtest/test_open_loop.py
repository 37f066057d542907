"""Open loop against real gateways: latency includes queueing (no coordinated omission), the closed loop
keeps its concurrency, and every run is bounded in requests in flight and in time."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from loadtest import arrivals
from loadtest.clients import make_driver
from loadtest.engine import ClosedLoop, OpenLoop, Run, execute
from loadtest.report import summarize
from loadtest.server import GatewayProcess
from tests.loadtest.conftest import clf_payloads, slow_payloads


def _in_flight_max(run: Run) -> int:
    """Most requests outstanding at once (a request cancelled at the end counts until the end)."""
    sent = ~np.isnan(run.sent_s)
    done = np.nan_to_num(run.done_s[sent], nan=np.inf)
    events = sorted([(float(t), 1) for t in run.sent_s[sent]] + [(float(t), -1) for t in done])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


async def test_open_loop_latency_includes_queueing_on_an_overloaded_server(
    slow_gateway: GatewayProcess,
) -> None:
    driver = make_driver("grpc", slow_gateway.grpc, "slow.fp32", slow_payloads(), timeout_s=30)
    try:
        closed = await execute(driver, ClosedLoop(1, 0.3))
        # 250/s: at least twice what the server can do even on a quiet machine (~10 ms a request), and
        # few enough sends that the generator keeps its schedule beside the server's busy core (at 500/s,
        # with the gateway on 1.4 of the 2 cores, it fell 0.8 s behind on one CI run)
        run = await execute(driver, OpenLoop(arrivals.schedule(arrivals.constant(250), 0.6)))
    finally:
        await driver.close()
    assert run.ok.all(), summarize(run).errors
    lat = run.latency_ms
    first, last = np.median(lat[run.scheduled_s < 0.04]), np.median(lat[run.scheduled_s > 0.52])
    # The backlog grows with every arrival the server cannot take: a request scheduled at t waits
    # about (k - 1) t at k times the server's rate: hundreds of milliseconds by the end.
    assert last > 3 * first and last > 250, (first, last)
    # ... because of the server, not the generator: requests left (nearly) on schedule.
    assert np.percentile((run.sent_s - run.scheduled_s) * 1000, 99) < 0.5 * last
    # A closed loop on the same server never sees it: it waits for each answer before asking again.
    assert last > 5 * np.median(closed.latency_ms[closed.ok])


async def test_a_stalled_generator_is_charged_to_latency(tiny_gateway: GatewayProcess) -> None:
    """Arrivals due while the generator itself is stuck are sent late, and their latency says so."""
    driver = make_driver("grpc", tiny_gateway.grpc, "clf.fp32", clf_payloads(), timeout_s=10)
    loop = asyncio.get_running_loop()
    loop.call_later(0.35, time.sleep, 0.3)  # blocks the event loop from about 0.3 s into the run
    try:
        run = await execute(driver, OpenLoop(arrivals.schedule(arrivals.constant(100), 1.0)))
    finally:
        await driver.close()
    assert run.ok.all()
    lag = run.sent_s - run.scheduled_s
    stalled = lag > 0.1
    assert 10 <= stalled.sum() <= 60
    assert np.all(run.latency_ms[stalled] >= lag[stalled] * 1000)
    assert run.latency_ms[stalled].max() > 200
    assert np.median(run.latency_ms[~stalled]) < 100


async def test_closed_loop_keeps_its_concurrency(tiny_gateway: GatewayProcess) -> None:
    driver = make_driver("http-binary", tiny_gateway.http, "clf.fp32", clf_payloads(), timeout_s=10)
    try:
        run = await execute(driver, ClosedLoop(4, 0.6))
    finally:
        await driver.close()
    assert run.ok.all() and len(run.error) > 20
    assert _in_flight_max(run) == 4
    np.testing.assert_array_equal(run.scheduled_s, run.sent_s)  # closed loop: latency from the send


async def test_in_flight_and_time_are_bounded(slow_gateway: GatewayProcess) -> None:
    # HTTP: its timeout stays with the client (a gRPC deadline would let the gateway refuse early)
    driver = make_driver("http-binary", slow_gateway.http, "slow.fp32", slow_payloads(), timeout_s=0.1)
    schedule = arrivals.schedule(arrivals.constant(400), 0.5)
    started = time.monotonic()
    try:
        run = await execute(driver, OpenLoop(schedule, max_inflight=20), drain_timeout_s=0.3)
    finally:
        await driver.close()
    elapsed = time.monotonic() - started
    s = summarize(run)
    assert s.arrivals == len(schedule)  # every arrival is accounted for
    assert s.errors.get("client_overflow", 0) > 50  # the server could not keep up; overflow was recorded
    assert s.errors.get("timeout", 0) > 0  # queued past the client's 0.1 s timeout
    assert _in_flight_max(run) <= 20
    assert elapsed < 0.5 + 0.3 + 2.0  # the schedule, the drain limit, and slack for a busy machine


async def test_max_requests_bounds_a_closed_loop(tiny_gateway: GatewayProcess) -> None:
    driver = make_driver("grpc-stream", tiny_gateway.grpc, "clf.fp32", clf_payloads(), timeout_s=10)
    try:
        run = await execute(driver, ClosedLoop(3, 30.0, max_requests=25))
    finally:
        await driver.close()
    assert len(run.error) == 25 and run.ok.all()
