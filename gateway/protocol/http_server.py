"""uvicorn for the gateway's HTTP listeners, with the limits uvicorn lacks against slow and stalled clients.

uvicorn bounds concurrency (``limit_concurrency``: 503 beyond it) and idle keep-alive connections, but a
connection that opens and never sends, or sends its headers a byte at a time, or part of a body and then
nothing, is held forever, and httptools accepts headers of any size. ``limited_protocol`` subclasses
uvicorn's httptools protocol with:

- a head deadline: the request line and headers must arrive within ``header_timeout_s`` of the connection
  opening or of the previous response (nginx's ``client_header_timeout``), else 408 and close;
- a head size cap: more than ``max_header_bytes`` before the headers end answers 431 and closes;
- a body idle timeout: a pause longer than ``body_timeout_s`` between two body reads closes the
  connection (nginx's ``client_body_timeout``); pauses uvicorn imposes itself (flow control while the
  application has not read what came) do not count.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int = 1024
    keep_alive_s: float = 75.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 64 * 1024
    backlog: int = 2048


def _refusal(status: int, reason: str) -> bytes:
    body = f'{{"error":"{reason}"}}'.encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "connection: close\r\n\r\n").encode() + body


class _LimitedProtocol(HttpToolsProtocol):
    limits: HttpLimits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes of chunks in which the head did not end (a bound on what was buffered)
        self._head_exact = 0  # request line and header bytes, as parsed
        self._in_body = False
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if (
            self._head_timer is None
            and not self._in_body
            and (self.cycle is None or self.cycle.response_complete)
        ):
            self._arm_head()  # the first bytes after a keep-alive pause: a new request head begins
        if self._in_body:
            self._arm_body()
        super().data_received(data)
        if self._head_timer is not None and not self.transport.is_closing():
            self._head_bytes += len(data)  # the headers did not end in this chunk: all of it was head
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large")

    # The parser's callbacks; after a refusal the rest of the chunk being parsed is ignored.

    def on_message_begin(self) -> None:
        if not self._refused:
            super().on_message_begin()
            self._head_exact = 0

    def on_url(self, url: bytes) -> None:
        if not self._refused:
            self._head_exact += len(url)
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._refused:
            self._head_exact += len(name) + len(value) + 4
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._head_exact > self.limits.max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large")
            return
        super().on_headers_complete()
        self._in_body = True
        self._arm_body()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def _arm_head(self) -> None:
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_expired)

    def _arm_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_expired)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        self._refuse(408, "Request Timeout")

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or not self._in_body:
            return
        if self.flow.read_paused:  # uvicorn stopped reading until the application catches up
            self._arm_body()
            return
        self.transport.close()  # the application's receive() sees the disconnect

    def _refuse(self, status: int, reason: str) -> None:
        self._refused = True
        self._cancel_timers()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # no response of ours is being written
            self.transport.write(_refusal(status, reason))
        self.transport.close()


def limited_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with ``limits``' head deadline, head size cap and body timeout."""

    class LimitedHttpToolsProtocol(_LimitedProtocol):
        pass

    LimitedHttpToolsProtocol.limits = limits
    return LimitedHttpToolsProtocol


class GatewayUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the gateway owns SIGTERM/SIGINT (uvicorn would re-raise
    the signal after shutting down, killing the process instead of exiting 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a response's header and body writes meet Nagle and delayed ACKs (+40 ms per request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def server(app: Any, limits: HttpLimits, *, log_level: str, exit_timeout_s: float) -> GatewayUvicorn:
    config = uvicorn.Config(
        app,
        lifespan="off",  # the gateway starts and stops the service around all servers
        log_config=None,  # the gateway's logging configuration, not uvicorn's
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=max(1, math.ceil(exit_timeout_s)),
        http=limited_protocol(limits),
        ws="none",
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=max(1, math.ceil(limits.keep_alive_s)),
        backlog=limits.backlog,
    )
    return GatewayUvicorn(config)
