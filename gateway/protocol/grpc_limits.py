"""The gRPC server's bounds as ``grpc.aio.server`` options (``gateway.settings_limits`` says why each
default was chosen)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.protocol.codec import MAX_REQUEST_BYTES

__all__ = ["GrpcLimits"]


@dataclass(frozen=True, slots=True)
class GrpcLimits:
    """Server bounds (``gateway.settings_limits`` says why each default)."""

    max_message_bytes: int = MAX_REQUEST_BYTES
    max_connections: int = 1024
    max_concurrent_rpcs: int = 1024
    max_stream_inflight: int = 64
    keepalive_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    max_connection_idle_s: float = 300.0
    max_connection_age_s: float = 0.0  # 0 = never
    max_connection_age_grace_s: float = 30.0
    handshake_timeout_s: float = 10.0

    def options(self) -> list[tuple[str, int]]:
        def ms(seconds: float) -> int:
            return max(1, round(seconds * 1000))

        options = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.keepalive_time_ms", ms(self.keepalive_s)),
            ("grpc.keepalive_timeout_ms", ms(self.keepalive_timeout_s)),
            ("grpc.keepalive_permit_without_calls", 1),  # ping idle connections too: find dead peers
            ("grpc.http2.max_pings_without_data", 0),  # keep pinging while no data flows
            ("grpc.max_connection_idle_ms", ms(self.max_connection_idle_s)),
            ("grpc.server_handshake_timeout_ms", ms(self.handshake_timeout_s)),
        ]
        if self.max_connection_age_s > 0:
            options += [
                ("grpc.max_connection_age_ms", ms(self.max_connection_age_s)),
                ("grpc.max_connection_age_grace_ms", ms(self.max_connection_age_grace_s)),
            ]
        return options
