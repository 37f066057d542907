"""The one table from core error kinds to HTTP status and gRPC code. Both adapters read it; neither keeps
its own (KServe's HTTP and gRPC servers drifted apart because each did).

Triton is the reference; where it is vague or where the issue asks for a clearer signal we deviate on
purpose, and say so here:

- ``not_ready`` -> 503 / UNAVAILABLE. Triton answers "'m' version v is not at ready state" with
  ``TRITONSERVER_ERROR_UNAVAILABLE``, which its HTTP server turns into 503 (``HttpCodeFromError``).
- ``overloaded`` -> 429 / RESOURCE_EXHAUSTED. Triton answers "Exceeds maximum queue size" with
  UNAVAILABLE (503); NVIDIA's own clients ask for 429 (NeMo-Retriever #1077) because 503 tells load
  balancers the replica is down when it is only busy. The issue asks for 429 explicitly.
- ``deadline_exceeded`` -> 504 / DEADLINE_EXCEEDED. Triton reports a queue-policy timeout as UNAVAILABLE
  (503) too; 503 would again read as "replica down", so we use the codes that say "ran out of time".
- ``payload_too_large`` -> 413 / RESOURCE_EXHAUSTED. Over gRPC, a message above the server's
  ``max_receive_message_length`` is refused by grpc itself with RESOURCE_EXHAUSTED (gRPC status-code
  guide: "Server: request message larger than max"); using the same code for our own body limit keeps
  one answer for one condition, and the message says which limit was hit.
- ``permission_denied`` -> 403 / PERMISSION_DENIED. Triton's restricted-API check answers 403 over HTTP
  but UNAVAILABLE over gRPC ("This protocol is restricted, expecting header ..."); UNAVAILABLE is
  retried by gRPC clients, so we use PERMISSION_DENIED, and keep Triton's message text.
- ``unsupported`` -> 501 / UNIMPLEMENTED, as Triton (``TRITONSERVER_ERROR_UNSUPPORTED`` ->
  ``EVHTP_RES_NOTIMPL``).
- ``invalid_argument`` 400, ``not_found`` 404, ``unavailable`` 503, ``internal`` 500: as Triton.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import grpc

from gateway.core.errors import ErrorKind


@dataclass(frozen=True, slots=True)
class WireStatus:
    http: int
    grpc: grpc.StatusCode


STATUS: Mapping[ErrorKind, WireStatus] = MappingProxyType(
    {
        ErrorKind.INVALID_ARGUMENT: WireStatus(400, grpc.StatusCode.INVALID_ARGUMENT),
        ErrorKind.NOT_FOUND: WireStatus(404, grpc.StatusCode.NOT_FOUND),
        ErrorKind.NOT_READY: WireStatus(503, grpc.StatusCode.UNAVAILABLE),
        ErrorKind.PAYLOAD_TOO_LARGE: WireStatus(413, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ErrorKind.OVERLOADED: WireStatus(429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ErrorKind.DEADLINE_EXCEEDED: WireStatus(504, grpc.StatusCode.DEADLINE_EXCEEDED),
        ErrorKind.PERMISSION_DENIED: WireStatus(403, grpc.StatusCode.PERMISSION_DENIED),
        ErrorKind.UNSUPPORTED: WireStatus(501, grpc.StatusCode.UNIMPLEMENTED),
        ErrorKind.UNAVAILABLE: WireStatus(503, grpc.StatusCode.UNAVAILABLE),
        ErrorKind.INTERNAL: WireStatus(500, grpc.StatusCode.INTERNAL),
    }
)


def http_status(kind: ErrorKind) -> int:
    return STATUS[kind].http


def grpc_code(kind: ErrorKind) -> grpc.StatusCode:
    return STATUS[kind].grpc
