"""The gateway's bounds on what clients can make it hold: queued requests, connections, concurrent calls,
request heads, and how long an idle or stalled client may keep a connection. ``Settings`` inherits them
(``varigate serve --http-max-connections ...``, ``VARIGATE_HTTP_MAX_CONNECTIONS``).

Overload answers 429 / RESOURCE_EXHAUSTED from the batchers' bounded queues (``default_max_queue_size``)
long before the server-level caps here are reached; those caps are the backstop that keeps memory and file
descriptors bounded whatever clients do. Each default says why it was chosen.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from gateway.protocol.grpc_limits import GrpcLimits
from gateway.protocol.http_server import HttpLimits

_HTTP, _GRPC = HttpLimits(), GrpcLimits()  # the servers' defaults, never a second literal


class ServerLimits(BaseSettings):
    default_max_queue_size: int = Field(
        256,
        ge=0,
        description="max_queue_size given to every priority level whose config.pbtxt sets none (Triton's 0 = "
        "unbounded); a full level refuses at once with 429 / RESOURCE_EXHAUSTED. 256 per variant is 8 "
        "batches of 32, about a second of MiniLM on 2 cores: deeper queues only add latency nobody waits "
        "for. A config's own non-zero max_queue_size is kept; 0 here leaves those levels unbounded.",
    )
    default_queue_timeout_ms: float = Field(
        1000.0,
        ge=0,
        description="Queue timeout (Triton's default_timeout_microseconds) given to every REJECT priority "
        "level whose config.pbtxt sets none, on top of the model's own max_queue_delay: a request that would "
        "wait longer is refused at once with 429 / "
        "RESOURCE_EXHAUSTED (the wait is predicted from the rows queued ahead and the backend's recent time "
        "per row), and one that still waits longer gets 504 / DEADLINE_EXCEEDED. Under overload a FIFO of "
        "requests whose clients have given up serves nobody in time; a second covers a deep queue of full "
        "MiniLM batches. Requests with their own deadline (gRPC deadline, deadline_ms) are also refused "
        "early "
        "when they cannot make it. 0 leaves such levels without a timeout.",
    )
    listen_backlog: int = Field(
        _HTTP.backlog,
        ge=1,
        description="listen() backlog of the HTTP and metrics sockets (uvicorn's default; the kernel caps it "
        "at net.core.somaxconn). Connections beyond it wait in the client's SYN retries, not in memory.",
    )
    http_max_connections: int = Field(
        _HTTP.max_connections,
        ge=1,
        description="uvicorn's limit_concurrency: with this many open HTTP connections or running requests, "
        "a new request is answered 503 and its connection closed. A backstop below the process's file "
        "limit (the gateway raises its soft RLIMIT_NOFILE to the hard one at start); overload is normally "
        "refused earlier, with 429, by the bounded queues.",
    )
    http_keep_alive_secs: float = Field(
        _HTTP.keep_alive_s,
        gt=0,
        description="An idle keep-alive HTTP connection is closed after this many seconds. Longer than load "
        "balancers' idle timeouts (AWS ALB 60 s) so the balancer closes first (the other order races and "
        "turns into 502s); nginx's default.",
    )
    http_header_timeout_secs: float = Field(
        _HTTP.header_timeout_s,
        gt=0,
        description="A request's line and headers must arrive within this many seconds of the connection "
        "opening (or of the previous response), else 408 and the connection is closed: slowloris clients "
        "and sockets that never send are dropped (uvicorn alone never closes them).",
    )
    http_body_timeout_secs: float = Field(
        _HTTP.body_timeout_s,
        gt=0,
        description="Longest pause between two reads of a request body (nginx's client_body_timeout); a "
        "client that sends part of a body and stops is disconnected after it.",
    )
    http_max_header_bytes: int = Field(
        _HTTP.max_header_bytes,
        ge=1024,
        description="Largest request line plus headers; more answers 431 and closes (httptools sets no limit "
        "of its own). Generous: Triton clients send well under 1 KiB, nginx allows 32 KiB.",
    )
    grpc_max_connections: int = Field(
        _GRPC.max_connections,
        ge=1,
        description="gRPC connections accepted at once (grpc.max_allowed_incoming_connections); further ones "
        "are closed at accept. Sized like http_max_connections.",
    )
    grpc_max_concurrent_rpcs: int = Field(
        _GRPC.max_concurrent_rpcs,
        ge=1,
        description="gRPC calls running at once (a stream counts once); beyond it grpc answers "
        "RESOURCE_EXHAUSTED immediately. A backstop above what the queues hold.",
    )
    grpc_max_stream_inflight: int = Field(
        _GRPC.max_stream_inflight,
        ge=1,
        description="Requests of one ModelStreamInfer stream in progress at once (responses not yet written "
        "included); the stream is not read further until one finishes, so HTTP/2 flow control pushes "
        "back on the client. Two full batches of 32.",
    )
    grpc_keepalive_secs: float = Field(
        _GRPC.keepalive_s,
        gt=0,
        description="The server pings a gRPC connection that has been quiet this long, to find dead peers "
        "(gRPC's default is 2 h). 60 s stays below NAT and L4 balancers' idle timeouts (AWS NLB 350 s).",
    )
    grpc_keepalive_timeout_secs: float = Field(
        _GRPC.keepalive_timeout_s,
        gt=0,
        description="A ping unanswered this long closes the connection (gRPC's default).",
    )
    grpc_max_connection_idle_secs: float = Field(
        _GRPC.max_connection_idle_s,
        gt=0,
        description="A gRPC connection with no call for this long gets GOAWAY (clients reconnect "
        "transparently); frees connections that were opened and abandoned.",
    )
    grpc_max_connection_age_secs: float = Field(
        _GRPC.max_connection_age_s,
        ge=0,
        description="GOAWAY after a connection has lived this long, then exit_timeout_secs of grace for its "
        "calls; 0 = never. Off because long streams are legitimate; behind an L4 balancer set e.g. 1800 so "
        "connections rebalance across replicas.",
    )
    grpc_handshake_timeout_secs: float = Field(
        _GRPC.handshake_timeout_s,
        gt=0,
        description="A new gRPC connection must send its HTTP/2 preface and settings within this many "
        "seconds (gRPC's default 120 s); sockets that connect and never speak are closed.",
    )
