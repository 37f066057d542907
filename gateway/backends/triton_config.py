"""The Triton fleet's configuration (``--triton-servers`` and the rest) and its errors
(``gateway.backends.triton``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


class FleetError(RuntimeError):
    """The fleet could not run a batch; the message names the model and the servers."""


class NoServerReady(FleetError):
    """No server has the model READY with its circuit not open (or every such server was tried)."""


class RemoteRejected(FleetError):
    """A server refused the input as invalid (INVALID_ARGUMENT / HTTP 400): not retried."""


class RemoteFailed(FleetError):
    """Every attempt failed; the message names each server tried and why."""


def _check_address(entry: str) -> str:
    host, sep, port = entry.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"Triton server {entry!r} is not 'host:port' with a port in 1..65535")
    return entry.strip()


@dataclass(frozen=True, slots=True)
class FleetConfig:
    servers: tuple[str, ...]  # "host:port" (gRPC or HTTP port, as ``protocol`` says)
    protocol: Literal["grpc", "http"] = "grpc"
    health_interval_s: float = 0.5
    slots_per_server: int = 2  # batches in flight per server the scheduler may count on
    breaker_failures: int = 3  # consecutive failures that open a server's circuit
    breaker_open_s: float = 2.0  # open this long, then half-open: one probe decides
    attempt_timeout_s: float = 5.0  # an attempt's cap when the caller gives no deadline
    health_timeout_s: float = 0.5  # a health check not answered in this long: the server is down
    min_attempt_s: float = 0.05  # the floor of an attempt's timeout, and of a retry's reserve

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("a Triton fleet needs at least one server")
        for entry in self.servers:
            _check_address(entry)
        if len(set(self.servers)) != len(self.servers):
            raise ValueError(f"Triton servers {self.servers!r} name a server twice")
        if self.protocol not in ("grpc", "http"):
            raise ValueError(f"protocol {self.protocol!r} is not 'grpc' or 'http'")
        for name in ("health_interval_s", "attempt_timeout_s", "health_timeout_s", "min_attempt_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name, low in (("slots_per_server", 1), ("breaker_failures", 1), ("breaker_open_s", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, not {getattr(self, name)!r}")

    @classmethod
    def parse(cls, text: str, **kw: Any) -> FleetConfig:
        """``"h:p,h:p"`` (``--triton-servers`` / ``VARIGATE_TRITON_SERVERS``) plus the other fields."""
        entries = [e.strip() for e in text.split(",")]
        for i, entry in enumerate(entries):
            if not entry:
                raise ValueError(f"Triton servers {text!r}: entry {i + 1} is empty")
            try:
                _check_address(entry)
            except ValueError as e:
                raise ValueError(f"Triton servers {text!r}: entry {i + 1}: {e}") from None
        return cls(tuple(entries), **kw)
