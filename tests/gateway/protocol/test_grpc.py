"""The gRPC stream on the real gateway, where tests/e2e does not go: requests of one stream run
concurrently and are answered as they complete, and a malformed message is answered in the stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as tga
from tritonclient.grpc import service_pb2 as pb

from gateway.main import Gateway
from tests.e2e.support import tiny_batch
from tests.e2e.test_e2e_grpc import _typed_request
from tests.e2e.test_e2e_scheduling import grpc_inputs
from tests.fixtures.tinyrepo import EMBED_DIM, tiny_reference
from tests.gateway.conftest import Gate

from .conftest import grpc_url, running


async def test_a_stream_answers_each_request_when_it_completes(text_repo: Path, gate: Gate) -> None:
    """The first request is held in the backend; a bad one sent after it is answered before it (a
    stream served in order would wait for the first), and a good one queued behind it follows it."""
    first, last = tiny_batch(1, 4, seed=7), tiny_batch(2, 3, seed=8)

    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield {"model_name": "tiny.fp32", "inputs": grpc_inputs(*first), "request_id": "first"}
        await gate.entered()  # running, and it stays there until the gate opens
        yield {"model_name": "tiny.fp32", "inputs": grpc_inputs(*first)[:1], "request_id": "bad"}
        yield {"model_name": "tiny.fp32", "inputs": grpc_inputs(*last), "request_id": "last"}

    order: list[str] = []
    results: dict[str, np.ndarray] = {}
    async with running(text_repo, gate=gate) as gw, tga.InferenceServerClient(grpc_url(gw)) as client:
        async for result, error in client.stream_infer(requests()):
            if error is not None:
                order.append(f"error: {error.message()}")
                gate.open()
            else:
                response_id = result.get_response().id
                order.append(response_id)
                results[response_id] = result.as_numpy("embedding")
            if len(order) == 3:
                break
    missing = "error: expected 2 inputs but got 1 inputs for model 'tiny.fp32'; missing ['attention_mask']"
    assert order == [missing, "first", "last"]
    for name, (ids, mask) in (("first", first), ("last", last)):
        np.testing.assert_allclose(results[name], tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)


async def test_a_malformed_message_in_a_stream_is_answered_in_the_stream(gw: Gateway) -> None:
    ids, mask = tiny_batch(1, 5, seed=9)
    async with grpc.aio.insecure_channel(grpc_url(gw)) as channel:
        stream: grpc.aio.StreamStreamMultiCallable[bytes, Any] = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        call = stream(iter([b"\xff\xff\xff", _typed_request(ids, mask).SerializeToString()]))
        replies = [reply async for reply in call]
    errors = [r.error_message for r in replies if r.error_message]
    answers = [r.infer_response for r in replies if not r.error_message]
    assert (
        len(errors) == 1
        and "malformed protobuf for /inference.GRPCInferenceService/ModelStreamInfer" in errors[0]
    )
    assert [a.id for a in answers] == ["typed"]
    embedding = np.frombuffer(answers[0].raw_output_contents[0], np.float32).reshape(1, EMBED_DIM)
    np.testing.assert_allclose(embedding, tiny_reference(ids, mask), rtol=1e-5, atol=1e-6)
