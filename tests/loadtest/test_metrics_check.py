"""The /metrics cross-check agrees with an honest server and catches a count that went missing."""

from __future__ import annotations

import re

import tritonclient.http as httpclient

from loadtest import arrivals
from loadtest.clients import make_driver
from loadtest.engine import OpenLoop, Run, execute
from loadtest.metrics_check import cross_check, scrape
from loadtest.server import GatewayProcess
from tests.loadtest.conftest import clf_payloads, tiny_payloads


async def _run(gw: GatewayProcess, model: str = "tiny") -> tuple[str, Run, str]:
    load = clf_payloads() if model.startswith("clf") else tiny_payloads()
    driver = make_driver("http-binary", gw.http, model, load, timeout_s=10)
    before = scrape(gw.metrics_url)
    try:
        run = await execute(driver, OpenLoop(arrivals.schedule(arrivals.constant(100), 0.4)))
    finally:
        await driver.close()
    return before, run, scrape(gw.metrics_url)


def _drop_one(text: str, name: str, model: str) -> str:
    """The same exposition with one count fewer in ``name{model=...}``: a request the server lost."""
    pattern = re.compile(rf'^({name}\{{model="{re.escape(model)}",[^}}]*\}}) (\S+)$', re.MULTILINE)
    match = pattern.search(text)
    assert match, f"{name} for {model} not in /metrics"
    return pattern.sub(lambda m: f"{m.group(1)} {float(m.group(2)) - 1}", text, count=1)


async def test_counts_agree_with_an_honest_server(tiny_gateway: GatewayProcess) -> None:
    before, run, after = await _run(tiny_gateway)
    check = cross_check(before, after, run, "tiny")
    assert check.agrees, check.disagreements
    assert check.server_success == check.client_success == len(run.error)
    assert check.server_success_by_model == {"tiny.fp32": len(run.error)}
    assert check.server_rows >= check.client_rows  # plus the gateway's own shadow comparisons, if any


async def test_a_dropped_success_count_is_caught(tiny_gateway: GatewayProcess) -> None:
    before, run, after = await _run(tiny_gateway)
    tampered = _drop_one(after, "nv_inference_request_success", "tiny.fp32")
    check = cross_check(before, tampered, run, "tiny")
    assert not check.agrees
    n = len(run.error)
    assert any(
        f"server counted {n - 1} successes, the generator received {n} (-1" in d for d in check.disagreements
    )


async def test_a_dropped_row_count_is_caught(tiny_gateway: GatewayProcess) -> None:
    before, run, after = await _run(tiny_gateway, "clf")  # one variant: nothing to shadow
    assert cross_check(before, after, run, "clf").agrees
    check = cross_check(before, _drop_one(after, "nv_inference_count", "clf.fp32"), run, "clf")
    assert any("nv_inference_count" in d for d in check.disagreements), check.disagreements


async def test_traffic_the_generator_did_not_send_is_caught(tiny_gateway: GatewayProcess) -> None:
    payload = tiny_payloads(1).requests[0]
    driver = make_driver("grpc", tiny_gateway.grpc, "tiny", tiny_payloads(), timeout_s=10)
    before = scrape(tiny_gateway.metrics_url)
    try:
        run = await execute(driver, OpenLoop(arrivals.schedule(arrivals.constant(50), 0.2)))
    finally:
        await driver.close()
    other = httpclient.InferenceServerClient(tiny_gateway.http)  # another client on the same server
    inputs = []
    for name, array in payload.items():
        inputs.append(httpclient.InferInput(name, list(array.shape), "INT64"))
        inputs[-1].set_data_from_numpy(array)
    other.infer("tiny", inputs)
    other.close()
    check = cross_check(before, scrape(tiny_gateway.metrics_url), run, "tiny")
    assert any("(+1; another client on the server?)" in d for d in check.disagreements), check.disagreements
