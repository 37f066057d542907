"""Protocol adapters against a scripted ``InferenceService``, served for real on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.protocol import grpc as grpc_protocol
from gateway.protocol.http import HttpOptions, create_app
from gateway.protocol.restricted import GRPC_HEADER_PREFIX, Restrictions
from tests.protocol.fakes import FakeService


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


async def serve_http(app: Any) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(500):  # readiness polling
            try:
                await client.get(f"http://{url}/v2/health/live")  # any answer: the server is up
                break
            except httpx.TransportError:
                await asyncio.sleep(0.01)
        else:
            raise RuntimeError("HTTP server did not come up")
    try:
        yield url
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
def http_options() -> HttpOptions:
    return HttpOptions(max_body_bytes=1 << 20)


@pytest.fixture
async def http_url(fake: FakeService, http_options: HttpOptions) -> AsyncIterator[str]:
    async for url in serve_http(create_app(fake, http_options)):
        yield url


@pytest.fixture
def grpc_restrictions() -> Restrictions:
    return Restrictions(header_prefix=GRPC_HEADER_PREFIX, noun="protocol")


@pytest.fixture
async def grpc_url(fake: FakeService, grpc_restrictions: Restrictions) -> AsyncIterator[str]:
    server, health = grpc_protocol.create_server(
        fake, restrictions=grpc_restrictions, max_message_bytes=1 << 20
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await grpc_protocol.set_serving(health, True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)
