"""Every protocol drives a real gateway through tritonclient: successes carry the serving variant, and
refusals are classified by kind the same way on HTTP and gRPC."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest import arrivals
from loadtest.clients import Protocol, make_driver
from loadtest.engine import ClosedLoop, OpenLoop, execute
from loadtest.payloads import Payloads
from loadtest.report import summarize
from loadtest.server import GatewayProcess
from tests.fixtures.tinyrepo import POISON_ID
from tests.loadtest.conftest import tiny_payloads

PROTOCOLS = [p.value for p in Protocol]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_each_protocol_serves_and_names_the_variant(
    tiny_gateway: GatewayProcess, protocol: str
) -> None:
    driver = make_driver(protocol, tiny_gateway.url(protocol), "tiny", tiny_payloads(), timeout_s=10)
    try:
        run = await execute(
            driver,
            OpenLoop(arrivals.schedule(arrivals.poisson(150), 0.4, seed=1)),
            parameters={"note": "loadtest"},
            slo_ms=2000,
        )
    finally:
        await driver.close()
    s = summarize(run)
    assert s.arrivals > 20 and s.errors == {}
    assert s.variants == {"tiny.fp32": s.succeeded}  # the logical model's most accurate variant
    assert s.slo_attainment == 1.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_refusals_are_classified_alike(tiny_gateway: GatewayProcess, protocol: str) -> None:
    url = tiny_gateway.url(protocol)
    unknown = make_driver(protocol, url, "no-such-model", tiny_payloads(4), timeout_s=10)
    ids = np.array([[1, 2, POISON_ID]], dtype=np.int64)  # onnxruntime fails the batch: a backend error
    poison = Payloads(({"input_ids": ids, "attention_mask": np.ones_like(ids)},), (), "poison")
    failing = make_driver(protocol, url, "tiny.fp32", poison, timeout_s=10)
    try:
        missing = await execute(unknown, ClosedLoop(1, 10.0, max_requests=3))
        broken = await execute(failing, ClosedLoop(1, 10.0, max_requests=2))
    finally:
        await unknown.close()
        await failing.close()
    assert summarize(missing).errors == {"not_found": 3}
    assert summarize(broken).errors == {"server": 2}


async def test_an_unreachable_server_is_a_connection_error() -> None:
    from loadtest.server import free_port

    for protocol in ("http-binary", "grpc", "grpc-stream"):
        driver = make_driver(protocol, f"127.0.0.1:{free_port()}", "m", tiny_payloads(2), timeout_s=2)
        try:
            run = await execute(driver, ClosedLoop(1, 5.0, max_requests=2))
        finally:
            await driver.close()
        assert set(summarize(run).errors) <= {"connection", "unavailable"}, (protocol, summarize(run).errors)
