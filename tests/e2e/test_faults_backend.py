"""A backend that raises or hangs, on the real gateway with real onnxruntime models: only its batches fail,
requests past their deadline are answered at it, the circuit breaker routes requests to the logical model
around the faulty variant and brings it back once it works again.

Faults are injected into the real onnxruntime backend by ``tests.fixtures.faulty_backend`` (a JSON file the
gateway re-reads before every batch). The policy is ``static:int8``, so ``tiny`` normally goes to
``tiny.int8``: any answer from ``tiny.fp32`` is the breaker's doing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as tga
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.e2e.support import GatewayProcess, timed, tiny_batch
from tests.e2e.test_e2e_scheduling import grpc_inputs, http_inputs
from tests.fixtures.faulty_backend import FAULTS_ENV, write_faults
from tests.fixtures.tinyrepo import build_tiny_repository, tiny_reference

K = 3  # --circuit-breaker-failures
COOLDOWN_S = 1.0
HANG_S = 5.0
DEADLINE_MS = 1000


class Faulty:
    def __init__(self, gw: GatewayProcess, faults: Path) -> None:
        self.gw, self.faults = gw, faults

    def set(self, **faults: dict[str, Any]) -> None:
        write_faults(self.faults, {name.replace("_", "."): f for name, f in faults.items()})


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    tmp = tmp_path_factory.mktemp("faults")
    faults = tmp / "faults.json"
    write_faults(faults, {})
    args = [
        "--backend", "tests.fixtures.faulty_backend:FaultyBackend",
        "--policy", "static:int8",
        "--shadow-fraction", "0",
        "--circuit-breaker-failures", str(K),
        "--circuit-breaker-cooldown-secs", str(COOLDOWN_S),
    ]  # fmt: skip
    gw = GatewayProcess(build_tiny_repository(tmp / "repo", classifier=False), tmp / "gw.log", args,
                        {FAULTS_ENV: str(faults)})  # fmt: skip
    try:
        yield Faulty(gw.start(), faults)
    finally:
        gw.kill()


def variant_of(result: Any) -> str:
    response = result.get_response()
    if isinstance(response, dict):  # HTTP
        return str(response["parameters"]["varigate_variant"])
    return str(response.parameters["varigate_variant"].string_param)


def check(result: Any, ids: np.ndarray, mask: np.ndarray) -> str:
    """The variant that answered; its embedding must be that variant's."""
    variant = variant_of(result)
    expected = tiny_reference(ids, mask, variant.split(".")[1])
    np.testing.assert_allclose(result.as_numpy("embedding"), expected, rtol=1e-5, atol=1e-6)
    return variant


async def until_variant(http: Any, variant: str, timeout_s: float) -> int:
    """Send requests to ``tiny`` one after another until ``variant`` answers; return how many it took."""
    ids, mask = tiny_batch(1, 4, seed=1)
    deadline = time.monotonic() + timeout_s
    sent = 0
    while time.monotonic() < deadline:
        sent += 1
        try:
            if check(await http.infer("tiny", http_inputs(ids, mask)), ids, mask) == variant:
                return sent
        except InferenceServerException:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{variant} never answered requests to 'tiny' within {timeout_s} s")


async def pinned_traffic(grpc: Any, stop: asyncio.Event, seen: list[tuple[float, Any]]) -> None:
    """Requests pinned to the healthy variant, one after another, while the fault lasts."""
    i = 0
    while not stop.is_set():
        ids, mask = tiny_batch(2, 3 + i % 4, seed=500 + i)
        elapsed, result = await timed(grpc.infer("tiny.fp32", grpc_inputs(ids, mask)))
        seen.append((elapsed, result if isinstance(result, Exception) else check(result, ids, mask)))
        i += 1


async def test_raising_variant_fails_only_its_batches_and_is_routed_around(faulty: Faulty) -> None:
    gw = faulty.gw
    ids, mask = tiny_batch(2, 5, seed=2)
    async with tha.InferenceServerClient(gw.http) as http, tga.InferenceServerClient(gw.grpc) as grpc:
        faulty.set()
        assert check(await http.infer("tiny", http_inputs(ids, mask)), ids, mask) == "tiny.int8"
        stop, others = asyncio.Event(), list[tuple[float, Any]]()
        background = asyncio.create_task(pinned_traffic(grpc, stop, others))
        faulty.set(tiny_int8={"raise": "boom"})
        failures: list[InferenceServerException] = []
        answered: list[str] = []
        for _ in range(K + 20):
            try:
                answered.append(check(await http.infer("tiny", http_inputs(ids, mask)), ids, mask))
            except InferenceServerException as e:
                assert not answered, f"a request failed after the breaker had routed around: {e}"
                failures.append(e)
        assert 1 <= len(failures) <= K and answered == ["tiny.fp32"] * len(answered)
        for failure in failures:
            assert failure.status() == "500" and "'tiny.int8'" in failure.message(), failure
            assert "boom" in failure.message(), failure
        # pinned requests still go to the pinned variant and get its error, over both protocols
        _, h_error = await timed(http.infer("tiny.int8", http_inputs(ids, mask)))
        _, g_error = await timed(grpc.infer("tiny.int8", grpc_inputs(ids, mask)))
        assert isinstance(h_error, InferenceServerException) and h_error.status() == "500"
        assert isinstance(g_error, InferenceServerException) and g_error.status() == "StatusCode.INTERNAL"
        for error in (h_error, g_error):
            assert "model 'tiny.int8'" in error.message(), error
            assert "injected fault in tiny.int8: boom" in error.message(), error
        assert await asyncio.to_thread(gw.metric, "varigate_variant_circuit_open", variant="tiny.int8") == 1
        stop.set()
        await background
        assert len(others) >= 5 and all(v == "tiny.fp32" for _, v in others), others[:3]

        faulty.set()  # repaired: after the cool-down one probe goes to int8, succeeds, the circuit closes
        switched_off = time.monotonic()
        await until_variant(http, "tiny.int8", timeout_s=COOLDOWN_S + 5)
        back_s = time.monotonic() - switched_off
        assert back_s < COOLDOWN_S + 5
        print(f"\nraising: {len(failures)} failed before routing around (K={K}); back {back_s:.2f} s")
        assert await asyncio.to_thread(gw.metric, "varigate_variant_circuit_open", variant="tiny.int8") == 0
        for _ in range(5):
            assert check(await http.infer("tiny", http_inputs(ids, mask)), ids, mask) == "tiny.int8"
    failed = await asyncio.to_thread(
        gw.metric, "varigate_batches_total", variant="tiny.int8", outcome="failure"
    )
    assert failed >= len(failures) + 2


async def test_hanging_variant_answers_at_the_deadline_and_others_proceed(faulty: Faulty) -> None:
    gw = faulty.gw
    ids, mask = tiny_batch(1, 6, seed=3)
    limit = {"deadline_ms": DEADLINE_MS}
    async with tha.InferenceServerClient(gw.http) as http, tga.InferenceServerClient(gw.grpc) as grpc:
        faulty.set()
        await until_variant(http, "tiny.int8", timeout_s=COOLDOWN_S + 5)
        stop, others = asyncio.Event(), list[tuple[float, Any]]()
        background = asyncio.create_task(pinned_traffic(grpc, stop, others))
        faulty.set(tiny_int8={"sleep_s": HANG_S})
        started = time.monotonic()
        stuck = await asyncio.gather(
            timed(http.infer("tiny.int8", http_inputs(ids, mask), parameters=limit)),
            timed(grpc.infer("tiny.int8", grpc_inputs(ids, mask), parameters=limit, client_timeout=4.0)),
            timed(http.infer("tiny", http_inputs(ids, mask), parameters=limit)),
        )
        # the variant's instance is stuck: requests to the logical model go to fp32 meanwhile, fast
        during = [await timed(http.infer("tiny", http_inputs(ids, mask))) for _ in range(10)]
        faulty.set()
        stop.set()
        await background
        in_hang = time.monotonic() - started < HANG_S
        recovered_after = await until_variant(http, "tiny.int8", timeout_s=HANG_S + 5)
        back_s = time.monotonic() - started
    statuses = [e.status() if isinstance(e, InferenceServerException) else repr(e) for _, e in stuck]
    assert statuses == ["504", "StatusCode.DEADLINE_EXCEEDED", "504"], stuck
    for elapsed, e in stuck:
        assert "ran past its deadline" in e.message() and "'tiny.int8'" in e.message(), e.message()
        assert DEADLINE_MS / 1000 - 0.05 <= elapsed <= DEADLINE_MS / 1000 + 0.5, elapsed
    assert in_hang, "the checks during the hang took longer than the hang"
    for elapsed, result in during:
        assert not isinstance(result, Exception) and variant_of(result) == "tiny.fp32", result
        assert elapsed < 0.5, elapsed
    assert len(others) >= 5 and all(v == "tiny.fp32" and t < 0.5 for t, v in others), others
    assert back_s <= HANG_S + 3 and recovered_after >= 1
    slowest = max(t for t, _ in [*during, *others])
    answered_at = [round(t, 3) for t, _ in stuck]
    print(f"\nhang: answered at {answered_at} s; others <= {slowest:.3f} s; back at {back_s:.2f} s")
    timeouts = await asyncio.to_thread(
        gw.metric, "varigate_requests_total", variant="tiny.int8", outcome="timeout"
    )
    assert timeouts >= 3
