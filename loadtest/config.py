"""What one load test does, validated at the edge (pydantic): target, load shape, payloads, outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loadtest import arrivals
from loadtest.arrivals import Schedule
from loadtest.clients import Protocol
from loadtest.engine import ClosedLoop, OpenLoop
from loadtest.hosts import check
from varigate.contract.keys import MAX_LOSS_PARAMETER as ACCURACY_PARAMETER

DEFAULT_DURATION_S = 10.0
# per-request accuracy floor: the largest relative loss against fp32 accepted
# (the name gateway/core/selection/slo.py gives it)


class LoadTestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Server address host:port (HTTP or gRPC port, per --protocol).")
    protocol: Protocol = Field(Protocol.GRPC, description="http-json, http-binary, grpc or grpc-stream.")
    model: str = Field(description="Model to address: a logical model (the gateway picks) or a variant.")
    model_version: str = Field("", description="Model version; empty = the server's choice.")
    arrival: Literal["constant", "poisson", "bursts", "step", "trace"] = Field(
        "poisson", description="Open-loop arrival process (ignored when --concurrency is given)."
    )
    rate: float = Field(10.0, ge=0, description="Requests/s (bursts: between bursts; step: before the step).")
    burst_rate: float = Field(0.0, ge=0, description="Requests/s during a burst.")
    burst_on_s: float = Field(2.0, gt=0, description="Length of each burst, s.")
    burst_period_s: float = Field(10.0, gt=0, description="A burst starts every this many s.")
    step_rate: float = Field(0.0, ge=0, description="Requests/s after the step.")
    step_at_s: float = Field(5.0, gt=0, description="When the step happens, s.")
    trace: Path | None = Field(None, description="Trace file to replay (timestamps, optional slo_ms).")
    trace_speed: float = Field(1.0, gt=0, description="Replay speed factor.")
    concurrency: int | None = Field(
        None, ge=1, description="Closed loop with this many outstanding requests."
    )
    duration_s: float | None = Field(
        None, gt=0, le=86400, description="Length of the load, s (default 10; a trace: the whole trace)."
    )
    max_requests: int | None = Field(None, ge=1, description="Send at most this many requests.")
    warmup_s: float = Field(0.0, ge=0, description="Requests scheduled before this are left out of results.")
    seed: int = Field(0, description="Seed of the random arrival processes.")
    timeout_s: float = Field(30.0, gt=0, description="Per-request client timeout, s (also the drain limit).")
    max_inflight: int = Field(
        1024,
        ge=1,
        description="Open loop: outstanding requests at most; beyond: recorded as client_overflow.",
    )
    data: Literal["auto", "sentences", "digits", "random", "npz"] = Field("auto", description="Payloads.")
    data_file: Path | None = Field(None, description="Rows for --data npz.")
    batch: int = Field(1, ge=1, description="Rows per request.")
    seq_len: int | None = Field(None, ge=3, description="Sentences: exactly this many tokens each.")
    payloads: int = Field(256, ge=1, description="Distinct pre-built requests, used round-robin.")
    outputs: tuple[str, ...] = Field((), description="Outputs to request (default: all).")
    slo_ms: float | None = Field(None, gt=0, description="Latency SLO, ms: judged, and sent as slo_ms.")
    send_slo: bool = Field(True, description="Send the SLO as the request parameter slo_ms.")
    max_accuracy_loss: float | None = Field(
        None, ge=0, le=1, description=f"Per-request accuracy floor, sent as parameter {ACCURACY_PARAMETER}."
    )
    parameters: dict[str, Any] = Field(default_factory=dict, description="More request parameters.")
    metrics_url: str | None = Field(None, description="Server /metrics for the cross-check; None = skip.")
    allow_hosts: tuple[str, ...] = Field((), description="Non-loopback hosts allowed as targets.")
    server_pids: tuple[int, ...] = Field((), description="Server processes, left out of 'other' CPU.")
    out: Path | None = Field(None, description="Directory for JSON, CSV and PNG results.")
    plots: bool = Field(True, description="Write PNG plots.")
    progress: bool = Field(True, description="Live progress on stderr.")

    @model_validator(mode="after")
    def _check(self) -> LoadTestConfig:
        check(self.url, self.allow_hosts)
        if self.metrics_url:
            check(self.metrics_url, self.allow_hosts)
        if self.concurrency is None:
            if self.arrival == "trace" and self.trace is None:
                raise ValueError("--arrival trace needs --trace FILE")
            if self.arrival in ("constant", "poisson") and self.rate <= 0:
                raise ValueError(f"--rate must be > 0 for {self.arrival} arrivals, got {self.rate}")
            if self.arrival == "bursts" and self.burst_rate <= 0:
                raise ValueError("--arrival bursts needs --burst-rate > 0")
            if self.arrival == "step" and self.rate <= 0 and self.step_rate <= 0:
                raise ValueError("--arrival step needs --rate or --step-rate > 0")
        if self.data == "npz" and self.data_file is None:
            raise ValueError("--data npz needs --data-file FILE.npz")
        return self

    @property
    def seconds(self) -> float:
        """How long the load lasts (a trace without --duration: as long as the trace)."""
        return self.duration_s if self.duration_s is not None else DEFAULT_DURATION_S

    @property
    def closed(self) -> bool:
        return self.concurrency is not None

    def request_parameters(self) -> dict[str, Any]:
        params = dict(self.parameters)
        if self.max_accuracy_loss is not None:
            params[ACCURACY_PARAMETER] = self.max_accuracy_loss
        return params

    def schedule(self) -> Schedule:
        if self.arrival == "trace":
            assert self.trace is not None
            return arrivals.read_trace(self.trace, self.trace_speed).limited(
                self.duration_s, self.max_requests
            )
        process = {
            "constant": lambda: arrivals.constant(self.rate),
            "poisson": lambda: arrivals.poisson(self.rate),
            "bursts": lambda: arrivals.bursts(
                self.rate, self.burst_rate, self.burst_on_s, self.burst_period_s
            ),
            "step": lambda: arrivals.step(self.rate, self.step_rate, self.step_at_s),
        }[self.arrival]()
        return arrivals.schedule(
            process,
            self.seconds,
            seed=self.seed,
            max_requests=self.max_requests,
            description=self.describe(),
        )

    def load(self) -> OpenLoop | ClosedLoop:
        if self.concurrency is not None:
            return ClosedLoop(self.concurrency, self.seconds, self.max_requests)
        return OpenLoop(self.schedule(), self.max_inflight)

    def describe(self) -> str:
        if self.concurrency is not None:
            return f"closed loop, concurrency {self.concurrency}, {self.protocol}"
        shape = {
            "constant": f"constant {self.rate:g}/s",
            "poisson": f"Poisson {self.rate:g}/s",
            "bursts": f"bursts {self.burst_rate:g}/s for {self.burst_on_s:g} s "
            f"every {self.burst_period_s:g} s (else {self.rate:g}/s)",
            "step": f"step {self.rate:g}/s -> {self.step_rate:g}/s at {self.step_at_s:g} s",
            "trace": f"trace {self.trace}",
        }[self.arrival]
        return f"open loop, {shape}, {self.protocol}"
