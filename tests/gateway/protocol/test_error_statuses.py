"""Every error kind, reached for real over both wires, answers with the one table's HTTP status and gRPC
code (``gateway/protocol/status.py``), and a message that names the problem; request parameters reach the
service with their types. A new ``ErrorKind`` fails here until it is given a real trigger."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tga
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from gateway.core.errors import ErrorKind
from gateway.main import Gateway
from gateway.protocol.status import grpc_code, http_status
from tests.e2e.support import tiny_batch
from tests.e2e.test_e2e_scheduling import grpc_inputs, http_inputs
from tests.fixtures.tinyrepo import POISON_ID, build_tiny_repository, tiny_reference
from tests.gateway.conftest import Gate

from .conftest import grpc_url, http_url, running, wait_pending

KEY = "s3cret"
HTTP_ADMIN = {"admin-key": KEY}
GRPC_ADMIN = {"triton-grpc-protocol-admin-key": KEY}
RESTRICTED = [f"model-repository,statistics:admin-key={KEY}"]
SETTINGS: dict[str, Any] = {
    "model_control_mode": "explicit",
    "load_model": ["tiny.fp32", "clf.fp32"],  # tiny.int8 stays unloaded
    "http_restricted_api": RESTRICTED,
    "grpc_restricted_protocol": RESTRICTED,
}
IDS, MASK = tiny_batch(1, 4, seed=3)

Seen = tuple[str, str, str]  # wire, status as tritonclient reports it, message
Trigger = Callable[
    [Gateway, Gate, tha.InferenceServerClient, tga.InferenceServerClient], Awaitable[list[Seen]]
]


async def seen(wire: str, call: Awaitable[Any]) -> Seen:
    try:
        await call
    except InferenceServerException as e:
        return wire, e.status() or "", e.message() or ""
    raise AssertionError(f"{wire}: the call succeeded")


async def both(infer: Callable[[Any, Any], Awaitable[Any]], http: Any, grpc_: Any) -> list[Seen]:
    """The same call over each wire: ``infer(client, inputs)``."""
    return [
        await seen("http", infer(http, http_inputs)),
        await seen("grpc", infer(grpc_, grpc_inputs)),
    ]


async def invalid_argument(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    return await both(lambda c, inputs: c.infer("tiny", inputs(IDS, MASK)[:1]), http, grpc_)


async def not_found(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    return [
        *await both(lambda c, inputs: c.infer("nope", inputs(IDS, MASK)), http, grpc_),
        await seen("http", http.get_model_metadata("nope")),
        await seen("grpc", grpc_.get_model_metadata("nope")),
    ]


async def not_ready(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    return await both(lambda c, inputs: c.infer("tiny.int8", inputs(IDS, MASK)), http, grpc_)


async def payload_too_large(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    big = np.ones((1, 140_000), np.int64)  # 2 x 1.1 MB against the 1 MiB limit

    def sync_http() -> None:  # aiohttp warns about bodies over 1 MiB, and warnings are errors here
        with th.InferenceServerClient(http_url(gw)) as c:
            c.infer("tiny", http_inputs(big, big))

    return [
        await seen("http", asyncio.to_thread(sync_http)),
        await seen("grpc", grpc_.infer("tiny", grpc_inputs(big, big))),
    ]


async def _behind_a_held_batch(
    gw: Gateway, gate: Gate, http: Any, queued: int, refused: Callable[[], Awaitable[list[Seen]]]
) -> list[Seen]:
    """Hold one batch in the backend, queue ``queued`` more, take what ``refused`` sees, then let all of
    them finish: the accepted requests are answered correctly."""
    held = [asyncio.create_task(http.infer("tiny.fp32", http_inputs(IDS, MASK)))]
    await gate.entered()
    held += [asyncio.create_task(http.infer("tiny.fp32", http_inputs(IDS, MASK))) for _ in range(queued)]
    await wait_pending(gw, "tiny.fp32", queued)
    out = await refused()
    gate.open()
    for result in await asyncio.gather(*held):
        np.testing.assert_allclose(
            result.as_numpy("embedding"), tiny_reference(IDS, MASK), rtol=1e-5, atol=1e-6
        )
    return out


async def overloaded(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    async def refused() -> list[Seen]:
        return await both(lambda c, inputs: c.infer("tiny.fp32", inputs(IDS, MASK)), http, grpc_)

    return await _behind_a_held_batch(gw, gate, http, 2, refused)  # max_queue_size 2: full


async def deadline_exceeded(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    async def refused() -> list[Seen]:  # 1 ms in the queue, behind a batch that does not finish
        return await both(lambda c, i: c.infer("tiny.fp32", i(IDS, MASK), timeout=1000), http, grpc_)

    return await _behind_a_held_batch(gw, gate, http, 0, refused)


async def permission_denied(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    out = [
        await seen("http", http.get_model_repository_index()),
        await seen("http", http.get_inference_statistics(headers={"admin-key": "guess"})),
        await seen("grpc", grpc_.get_model_repository_index()),
        await seen("grpc", grpc_.get_inference_statistics(headers=HTTP_ADMIN)),  # gRPC wants the prefix
    ]
    index = await http.get_model_repository_index(headers=HTTP_ADMIN)
    assert {m["name"]: m["state"] for m in index}["tiny.fp32"] == "READY"
    stats = await grpc_.get_inference_statistics("tiny.fp32", headers=GRPC_ADMIN)
    assert stats.model_stats[0].name == "tiny.fp32"
    return out


async def unsupported(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    x = np.ones((1, 4), np.float32)
    h, g = th.InferInput("x", [1, 4], "FP32"), tg.InferInput("x", [1, 4], "FP32")
    h.set_data_from_numpy(x)
    g.set_data_from_numpy(x)
    return [
        await seen("http", http.infer("clf", [h], outputs=[th.InferRequestedOutput("probs", class_count=2)])),
        await seen(
            "grpc", grpc_.infer("clf", [g], outputs=[tg.InferRequestedOutput("probs", class_count=2)])
        ),
        await seen("http", http.load_model("tiny.int8", headers=HTTP_ADMIN, config="{}")),
        await seen("grpc", grpc_.load_model("tiny.int8", headers=GRPC_ADMIN, config="{}")),
    ]


async def unavailable(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    await gw.service.drain()  # what SIGTERM starts: accepted requests finish, new ones are refused
    assert not await http.is_server_ready() and not await grpc_.is_server_ready()
    return await both(lambda c, inputs: c.infer("tiny", inputs(IDS, MASK)), http, grpc_)


async def internal(gw: Gateway, gate: Gate, http: Any, grpc_: Any) -> list[Seen]:
    poison = np.array([[POISON_ID]], np.int64)
    return await both(
        lambda c, inputs: c.infer("tiny.fp32", inputs(poison, np.ones_like(poison))), http, grpc_
    )


TRIGGERS: dict[ErrorKind, tuple[Trigger, str]] = {  # what triggers the kind, and what every message says
    ErrorKind.INVALID_ARGUMENT: (invalid_argument, "missing ['attention_mask']"),
    ErrorKind.NOT_FOUND: (not_found, "unknown model 'nope'"),
    ErrorKind.NOT_READY: (not_ready, "model 'tiny.int8' is not ready"),
    ErrorKind.PAYLOAD_TOO_LARGE: (payload_too_large, "1048576"),
    ErrorKind.OVERLOADED: (overloaded, "model 'tiny.fp32' queue is full"),
    ErrorKind.DEADLINE_EXCEEDED: (deadline_exceeded, "timed out after 1000 us in the queue"),
    ErrorKind.PERMISSION_DENIED: (permission_denied, "is restricted, expecting header '"),
    ErrorKind.UNSUPPORTED: (unsupported, "not supported"),
    ErrorKind.UNAVAILABLE: (unavailable, "server is shutting down"),
    ErrorKind.INTERNAL: (internal, "model 'tiny.fp32' version 1 failed on a batch of 1 rows"),
}
HOLDS_A_BATCH = {ErrorKind.OVERLOADED, ErrorKind.DEADLINE_EXCEEDED}


@pytest.fixture(scope="module")
def queue_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Queues of at most 2 requests; a request's own timeout applies."""
    return build_tiny_repository(
        tmp_path_factory.mktemp("errors") / "repo", max_queue_size=2, allow_timeout_override=True
    )


@pytest.mark.parametrize("kind", list(ErrorKind))
async def test_every_error_kind_reaches_both_wires_through_the_table(
    kind: ErrorKind, queue_repo: Path, gate: Gate
) -> None:
    trigger, needle = TRIGGERS[kind]
    async with running(queue_repo, gate=gate, **SETTINGS) as gw:
        if kind not in HOLDS_A_BATCH:
            gate.open()
        async with (
            tha.InferenceServerClient(http_url(gw)) as http,
            tga.InferenceServerClient(grpc_url(gw)) as grpc_,
        ):
            observed = await trigger(gw, gate, http, grpc_)
    expected = {"http": str(http_status(kind)), "grpc": str(grpc_code(kind))}
    assert {wire for wire, _, _ in observed} == {"http", "grpc"}
    for wire, status, message in observed:
        assert (wire, status) == (wire, expected[wire]), message
        assert needle in message, (wire, message)


async def test_request_parameters_reach_the_service_with_their_types(gw: Gateway) -> None:
    """The service checks ``priority`` and ``timeout``; its messages show each value as decoded."""
    async with tha.InferenceServerClient(http_url(gw)) as http:
        ok = await http.infer(
            "tiny", http_inputs(IDS, MASK), priority=1, timeout=10_000, parameters={"slo_ms": 3.5, "tag": "x"}
        )
    np.testing.assert_allclose(ok.as_numpy("embedding"), tiny_reference(IDS, MASK), rtol=1e-5, atol=1e-6)
    body = {"inputs": [{"name": n, "datatype": "INT64", "shape": [1, 4], "data": a.ravel().tolist()}
                       for n, a in (("input_ids", IDS), ("attention_mask", MASK))]}  # fmt: skip
    cases: list[tuple[str, object, str]] = [
        ("priority", "urgent", "got 'urgent'"),
        ("timeout", 2.5, "got 2.5"),
        ("timeout", True, "got True"),
        ("priority", -1, "got -1"),
    ]
    async with (
        httpx.AsyncClient(base_url=f"http://{http_url(gw)}") as raw,
        grpc.aio.insecure_channel(grpc_url(gw)) as channel,
    ):
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for key, value, needle in cases:
            r = await raw.post("/v2/models/tiny/infer", json={**body, "parameters": {key: value}})
            assert r.status_code == 400 and needle in r.json()["error"], r.text
            request = pb.ModelInferRequest(model_name="tiny")
            for name, arr in (("input_ids", IDS), ("attention_mask", MASK)):
                request.inputs.add(name=name, datatype="INT64", shape=[1, 4])
                request.raw_input_contents.append(arr.tobytes())
            param = request.parameters[key]
            field = {str: "string_param", float: "double_param", bool: "bool_param", int: "int64_param"}
            setattr(param, field[type(value)], value)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.ModelInfer(request)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (
                f"request parameter {key!r} for model 'tiny.fp32' must be a non-negative integer, {needle}"
                in (e.value.details() or "")
            )
