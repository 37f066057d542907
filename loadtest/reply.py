"""What one load-test request came back with: a ``Reply`` (the serving variant, or the kind of error), and
how a tritonclient error or a gRPC response maps to it. Shared by every driver (``loadtest.clients``,
``loadtest.grpc_stream``); it imports no driver, so the drivers import it and not each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from varigate.contract.keys import VARIANT_PARAMETER

# Error kinds, the same names for both protocols.
HTTP_KINDS = {
    "400": "invalid",
    "404": "not_found",
    "413": "too_large",
    "429": "overloaded",
    "499": "cancelled",
    "500": "server",
    "502": "unavailable",
    "503": "unavailable",
    "504": "deadline",
}
GRPC_KINDS = {
    "INVALID_ARGUMENT": "invalid",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "overloaded",
    "CANCELLED": "cancelled",
    "INTERNAL": "server",
    "UNKNOWN": "server",
    "UNAVAILABLE": "unavailable",
    "DEADLINE_EXCEEDED": "deadline",
    "UNIMPLEMENTED": "unsupported",
    "FAILED_PRECONDITION": "invalid",
}
# Kinds that mean the request never reached the server's inference path (nothing for /metrics to count).
CLIENT_SIDE_KINDS = frozenset({"connection", "timeout", "client_overflow", "not_sent"})


@dataclass(frozen=True, slots=True)
class Reply:
    variant: str = ""
    error: str = ""  # "" = success, else an error kind ("overloaded", "timeout", ...)


def error_kind(status: str | None) -> str:
    """The kind of a tritonclient ``InferenceServerException.status()`` (HTTP code or gRPC status)."""
    if not status:
        return "server"
    if status.startswith("StatusCode."):
        return GRPC_KINDS.get(status.removeprefix("StatusCode."), "server")
    return HTTP_KINDS.get(status, f"http_{status}")


def http_variant(body: dict[str, Any]) -> str:
    """The serving variant of an HTTP response body: its ``varigate_variant`` parameter, else the model
    name (any Triton server answers with one)."""
    return str((body.get("parameters") or {}).get(VARIANT_PARAMETER) or body.get("model_name", ""))


def grpc_variant(response: Any) -> str:
    """The same for a gRPC ``ModelInferResponse``."""
    if VARIANT_PARAMETER in response.parameters:
        return str(response.parameters[VARIANT_PARAMETER].string_param)
    return str(response.model_name)
