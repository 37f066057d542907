"""Running the real gateway for end-to-end tests: ``python -m gateway.cli serve ...`` in a subprocess on
free loopback ports, over a tiny but real ONNX repository; readiness is polled, never assumed."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.fixtures.tinyrepo import VOCAB_SIZE, build_tiny_repository

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProcess:
    repository: Path
    log_path: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, via_env: bool = False) -> GatewayProcess:
        """Start and wait until ready; ``via_env`` passes repository and ports as VARIGATE_* variables."""
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        options = {
            "repository": str(self.repository),
            "http_port": str(self.http_port),
            "grpc_port": str(self.grpc_port),
            "metrics_port": str(self.metrics_port),
            "log_level": "warning",
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("VARIGATE_")}
        env.update({"PYTHONPATH": str(ROOT), **self.env})
        flags: list[str] = []
        for name, value in options.items():
            if via_env:
                env[f"VARIGATE_{name.upper()}"] = value
            else:
                flags += ["--" + name.replace("_", "-"), value]
        command = [sys.executable, "-m", "gateway.cli", "serve", *flags, *self.args]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.get(f"http://{self.http}/v2/health/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # polling interval, not a guess at readiness
        raise RuntimeError(f"gateway not ready after {START_TIMEOUT_S} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait for the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample from /metrics (0 when absent)."""
        text = httpx.get(self.metrics_url).text
        return metric_value(text, name, **labels)


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def run_gateway(tmp: Path, args: list[str] | None = None, **repo_options: Any) -> Iterator[GatewayProcess]:
    """Build a tiny repository under ``tmp`` (``TinyOptions`` overrides), serve it, kill it afterwards."""
    repo = build_tiny_repository(tmp / "repo", **repo_options)
    gw = GatewayProcess(repo, tmp / "gateway.log", args or [])
    try:
        yield gw.start()
    finally:
        gw.kill()


def tiny_batch(rows: int, length: int, seed: int = 0, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random ids (never the padding id 0) and a mask; the last ``pad`` positions padded."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB_SIZE, size=(rows, length), dtype=np.int64)
    mask = np.ones((rows, length), dtype=np.int64)
    if pad:
        ids[:, -pad:], mask[:, -pad:] = 0, 0
    return ids, mask
