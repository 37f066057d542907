"""One error hierarchy for the whole gateway. Protocol adapters map ``kind`` to HTTP/gRPC in one table
(``gateway/protocol/status.py``); nothing here knows about HTTP or gRPC."""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    NOT_READY = "not_ready"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    OVERLOADED = "overloaded"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    PERMISSION_DENIED = "permission_denied"
    UNSUPPORTED = "unsupported"
    UNAVAILABLE = "unavailable"  # shutting down
    INTERNAL = "internal"


class GatewayError(Exception):
    """Base of every error a client may see. The message names the bad value."""

    kind: ErrorKind = ErrorKind.INTERNAL
    reason: str = "internal"  # short label for metrics (nv_inference_request_failure{reason})

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(GatewayError):
    kind = ErrorKind.INVALID_ARGUMENT
    reason = "invalid_input"


class ModelNotFound(GatewayError):
    kind = ErrorKind.NOT_FOUND
    reason = "not_found"


class ModelNotReady(GatewayError):
    kind = ErrorKind.NOT_READY
    reason = "not_ready"


class PayloadTooLarge(GatewayError):
    kind = ErrorKind.PAYLOAD_TOO_LARGE
    reason = "payload_too_large"


class Overloaded(GatewayError):
    """Queue full, or no variant can meet the request's deadline and the policy rejects early."""

    kind = ErrorKind.OVERLOADED
    reason = "rejected"


class DeadlineExceeded(GatewayError):
    kind = ErrorKind.DEADLINE_EXCEEDED
    reason = "timeout"


class PermissionDenied(GatewayError):
    kind = ErrorKind.PERMISSION_DENIED
    reason = "permission_denied"


class Unsupported(GatewayError):
    kind = ErrorKind.UNSUPPORTED
    reason = "unsupported"


class Unavailable(GatewayError):
    kind = ErrorKind.UNAVAILABLE
    reason = "unavailable"


class BackendError(GatewayError):
    """The backend failed while running a batch: only that batch fails, and it is counted."""

    kind = ErrorKind.INTERNAL
    reason = "backend"


class ModelLoadError(GatewayError):
    """A model (version) could not be loaded: bad config, missing or broken model file, backend refusal."""

    kind = ErrorKind.INTERNAL
    reason = "load_failed"
