"""BYTES tensors end to end on the real string model (``text.base``): in and out over HTTP (binary and JSON)
and gRPC (raw and typed contents), batched by shape and never padded, and text that is not UTF-8 refused
before it can join (and fail) a batch of good requests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tga
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from gateway.main import Gateway
from tests.fixtures.tinyrepo import text_reference
from tests.gateway.conftest import Gate

from .conftest import grpc_url, http_url, running, wait_pending

WORDS = [["héllo wörld", "", "a  b\tc"], ["één", "two words ", "\x00 nul"]]
TEXT = np.array([[w.encode() for w in row] for row in WORDS], dtype=object)


def text(*words: str) -> np.ndarray:
    return np.array([[w.encode() for w in words]], dtype=object)


def http_text(data: np.ndarray, binary: bool = True) -> list[th.InferInput]:
    i = th.InferInput("text", list(data.shape), "BYTES")
    i.set_data_from_numpy(data, binary_data=binary)
    return [i]


def grpc_text(data: np.ndarray) -> list[tg.InferInput]:
    i = tg.InferInput("text", list(data.shape), "BYTES")
    i.set_data_from_numpy(data)
    return [i]


async def test_bytes_both_ways_over_http(gw: Gateway) -> None:
    expected = text_reference(TEXT)

    def binary_in() -> th.InferResult:
        with th.InferenceServerClient(http_url(gw)) as c:
            return c.infer(
                "text",
                http_text(TEXT),
                request_id="b-1",
                outputs=[
                    th.InferRequestedOutput("echo", binary_data=False),
                    th.InferRequestedOutput("words"),
                ],
            )

    first = await asyncio.to_thread(binary_in)
    doc = first.get_response()
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert (doc["id"], doc["model_name"], doc["model_version"]) == ("b-1", "text.base", "1")
    assert outputs["echo"] == {
        "name": "echo",
        "datatype": "BYTES",
        "shape": [2, 3],
        "data": [w for row in WORDS for w in row],
    }
    assert outputs["words"]["parameters"] == {"binary_data_size": 6 * 8}
    np.testing.assert_array_equal(first.as_numpy("words"), expected["words"])

    async with tha.InferenceServerClient(http_url(gw)) as c:
        second = await c.infer(
            "text",
            http_text(TEXT, binary=False),
            model_version="1",
            outputs=[th.InferRequestedOutput("echo"), th.InferRequestedOutput("words", binary_data=False)],
        )
    outputs = {o["name"]: o for o in second.get_response()["outputs"]}
    assert outputs["echo"]["parameters"]["binary_data_size"] == sum(4 + len(b) for b in TEXT.ravel())
    assert second.as_numpy("echo").tolist() == TEXT.tolist()
    assert outputs["words"]["data"] == expected["words"].ravel().tolist()


async def test_bytes_both_ways_over_grpc(gw: Gateway) -> None:
    expected = text_reference(TEXT)
    async with tga.InferenceServerClient(grpc_url(gw)) as client:
        raw = await client.infer("text", grpc_text(TEXT), request_id="g-b")
    assert raw.get_response().id == "g-b"
    assert raw.as_numpy("echo").tolist() == TEXT.tolist()
    np.testing.assert_array_equal(raw.as_numpy("words"), expected["words"])

    typed = pb.ModelInferRequest(model_name="text.base", id="typed")
    typed.inputs.add(name="text", datatype="BYTES", shape=[2, 3]).contents.bytes_contents.extend(TEXT.ravel())
    async with grpc.aio.insecure_channel(grpc_url(gw)) as channel:
        reply = await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(typed)
    assert [(o.name, o.datatype, list(o.shape)) for o in reply.outputs] == [
        ("echo", "BYTES", [2, 3]),
        ("words", "INT64", [2, 3]),
    ]
    echo, words = reply.raw_output_contents
    assert deserialize_bytes_tensor(echo).tolist() == TEXT.ravel().tolist()
    assert np.frombuffer(words, "<i8").tolist() == expected["words"].ravel().tolist()


async def test_bytes_requests_batch_by_shape_and_are_never_padded(text_repo: Path, gate: Gate) -> None:
    """One batch held; two requests of 2 strings, then two of 3, queue behind it (on the variant: Triton's
    batcher, whose instance holds the first). Equal shapes share a
    batch; BYTES are never padded, so unequal ones never do: two batches of 2 rows, each answer its own."""
    rows = [
        text("held one"),
        text("a b", "c"),
        text("d", "e f g"),
        text("h", "", "i j"),
        text(" k", "l", "m"),
    ]
    async with (
        running(text_repo, gate=gate) as gw,
        tha.InferenceServerClient(http_url(gw)) as http,
        tga.InferenceServerClient(grpc_url(gw)) as grpc_,
    ):

        def send(i: int) -> asyncio.Task[Any]:
            if i % 2:
                return asyncio.create_task(grpc_.infer("text.base", grpc_text(rows[i])))
            return asyncio.create_task(http.infer("text.base", http_text(rows[i])))

        tasks = [send(0)]
        await gate.entered()
        tasks += [send(1), send(2)]
        await wait_pending(gw, "text.base", 2)
        tasks += [send(3), send(4)]
        await wait_pending(gw, "text.base", 4)
        gate.open()
        results = await asyncio.gather(*tasks)
        stats = (await http.get_inference_statistics("text.base"))["model_stats"][0]
    for data, result in zip(rows, results, strict=True):
        assert result.as_numpy("echo").tolist() == data.tolist()
        np.testing.assert_array_equal(result.as_numpy("words"), text_reference(data)["words"])
    executed = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert executed == {1: 1, 2: 2}


async def test_text_that_is_not_utf8_is_refused_before_it_can_fail_a_batch(
    text_repo: Path, gate: Gate
) -> None:
    good, bad = text("fine words"), np.array([[b"\xffbad"]], dtype=object)
    async with (
        running(text_repo, gate=gate) as gw,
        tha.InferenceServerClient(http_url(gw)) as http,
        tga.InferenceServerClient(grpc_url(gw)) as grpc_,
    ):
        held = asyncio.create_task(http.infer("text.base", http_text(good)))
        await gate.entered()
        queued = asyncio.create_task(grpc_.infer("text.base", grpc_text(good)))
        await wait_pending(gw, "text.base", 1)  # the batch the bad requests would join
        refusals = []
        for call in (http.infer("text.base", http_text(bad)), grpc_.infer("text.base", grpc_text(bad))):
            with pytest.raises(InferenceServerException) as e:
                await asyncio.wait_for(call, 10)  # answered while the gate is shut: never queued
            refusals.append((e.value.status(), e.value.message()))
        gate.open()
        results = await asyncio.gather(held, queued)
    assert [status for status, _ in refusals] == ["400", "StatusCode.INVALID_ARGUMENT"]
    for _, message in refusals:
        assert "input 'text' of model 'text.base': BYTES element 0 (b'\\xffbad') is not UTF-8" in message
    for result in results:
        assert result.as_numpy("words").tolist() == [[2]]
