"""The gRPC interceptor wraps each method's handler once and reuses it: every later call must still be
checked against the restricted protocol (header present, absent, wrong, present again), a malformed
message must still be INVALID_ARGUMENT on a method already called, and a method the server does not serve
stays UNIMPLEMENTED however often it is called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb

from tests.fixtures.tinyrepo import build_tiny_repository
from tests.gateway.protocol.conftest import grpc_url, running

INDEX = "/inference.GRPCInferenceService/RepositoryIndex"
META = "/inference.GRPCInferenceService/ServerMetadata"
KEY = ("triton-grpc-protocol-admin-key", "s3cret")


def _call(channel: grpc.aio.Channel, method: str, response: Any) -> Any:
    return channel.unary_unary(
        method, request_serializer=lambda b: b, response_deserializer=response.FromString
    )


async def test_each_call_is_checked_after_the_handler_is_cached(tmp_path: Path) -> None:
    repo = build_tiny_repository(tmp_path / "repo", classifier=False)
    async with running(repo, grpc_restricted_protocol=["model-repository:admin-key=s3cret"]) as gw:
        async with grpc.aio.insecure_channel(grpc_url(gw)) as channel:
            index = _call(channel, INDEX, pb.RepositoryIndexResponse)
            request = pb.RepositoryIndexRequest().SerializeToString()
            codes = []
            for metadata in ([KEY], [], [(KEY[0], "wrong")], [KEY], None, [KEY]):
                try:
                    answer = await index(request, metadata=metadata)
                    assert {m.name for m in answer.models} == {"tiny.fp32", "tiny.int8"}
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as e:
                    assert "expecting header 'triton-grpc-protocol-admin-key'" in (e.details() or "")
                    codes.append(e.code())
            meta = _call(channel, META, pb.ServerMetadataResponse)
            assert (await meta(b"")).name == "varigate"
            malformed = []
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await meta(b"\xff\xff\xff")
                malformed.append((bad.value.code(), "malformed protobuf" in (bad.value.details() or "")))
            nope = _call(channel, "/inference.GRPCInferenceService/Nope", pb.ServerMetadataResponse)
            unknown = []
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError) as missing:
                    await nope(b"")
                unknown.append(missing.value.code())
    denied = grpc.StatusCode.PERMISSION_DENIED
    ok = grpc.StatusCode.OK
    assert codes == [ok, denied, denied, ok, denied, ok]
    assert malformed == [(grpc.StatusCode.INVALID_ARGUMENT, True)] * 2
    assert unknown == [grpc.StatusCode.UNIMPLEMENTED] * 2
