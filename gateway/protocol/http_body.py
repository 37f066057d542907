"""Reading an HTTP request's body within a limit (gzip and deflate inflated, bounded too), and running the
work of a request only while its client is still there."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

from gateway.core.errors import InvalidInput, PayloadTooLarge, Unsupported

T = TypeVar("T")

_DRAIN_CAP_FACTOR = 4  # read (and discard) at most this many times the limit before answering 413


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or ``None`` once the client has disconnected: the work is cancelled then, so a
    request whose client gave up (a timeout, under overload) leaves the queue at once instead of taking a
    batch slot for an answer nobody reads. gRPC does the same by itself (a cancelled call cancels its
    handler)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await _either(task, gone)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


async def _either(one: asyncio.Future[Any], other: asyncio.Future[Any]) -> None:
    """Return once ``one`` or ``other`` is done: ``asyncio.wait(FIRST_COMPLETED)`` for two, without its
    set and its coroutine checks (through the ABC machinery), on every request."""
    waiter: asyncio.Future[None] = one.get_loop().create_future()

    def wake(_: object) -> None:
        if not waiter.done():
            waiter.set_result(None)

    one.add_done_callback(wake)
    other.add_done_callback(wake)
    try:
        await waiter
    finally:
        one.remove_done_callback(wake)
        other.remove_done_callback(wake)


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read, so ``receive`` waits for that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def read_body(request: Request, limit: int) -> bytes:
    """The (decompressed) body, or PayloadTooLarge. An oversized body is drained, not kept, so the client
    reads a clean 413 instead of a broken pipe."""
    declared = request.headers.get("content-length")
    too_big = declared is not None and declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_big = True
        if too_big:
            chunks.clear()
            if size > _DRAIN_CAP_FACTOR * limit:
                break
        else:
            chunks.append(chunk)
    if too_big:
        raise PayloadTooLarge(f"request body of {declared or size} bytes exceeds the limit of {limit} bytes")
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "deflate"):
        body = _decompress(body, encoding, limit)
    elif encoding != "identity":
        raise Unsupported(f"Content-Encoding {encoding!r} is not supported; use gzip or deflate")
    return body


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate at most ``limit + 1`` bytes, whatever the body holds. One gzip member or zlib stream:
    bytes after its end (a second gzip member) and a truncated stream are refused, not dropped."""
    d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise InvalidInput(f"request body is not valid {encoding} data: {e}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
    if body and not d.eof:
        raise InvalidInput(f"request body is truncated {encoding} data")
    if d.unused_data:
        raise InvalidInput(
            f"request body has {len(d.unused_data)} bytes after the end of its {encoding} data; "
            "one gzip member or zlib stream is accepted"
        )
    return out
