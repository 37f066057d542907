"""A varigate gateway in a subprocess on free loopback ports, for benchmarks and tests.

``python -m gateway.cli serve`` with ``--repository`` and three free ports; readiness is polled on
``/v2/health/ready`` (never assumed after a sleep); ``stop`` sends SIGTERM and waits, ``kill`` ends it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    def __init__(
        self,
        repository: Path,
        log_path: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.repository, self.log_path, self.args = repository, log_path, tuple(args)
        self.env = env or {}
        self.start_timeout_s = start_timeout_s
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def url(self, protocol: str) -> str:
        return self.grpc if protocol.startswith("grpc") else self.http

    def start(self, via_env: bool = False) -> Self:
        """Start and wait until ready; ``via_env`` passes repository and ports as ``VARIGATE_*`` variables."""
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
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        wait_ready(
            self.proc, [f"http://{self.http}/v2/health/ready"], self.start_timeout_s, "gateway", self.log
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then the exit status (``subprocess.TimeoutExpired`` if it does not exit in time)."""
        assert self.proc is not None, "not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def wait_ready(
    proc: subprocess.Popen[bytes],
    urls: Sequence[str],
    timeout_s: float,
    what: str,
    log: Callable[[], str],
    error: type[Exception] = RuntimeError,
) -> None:
    """Poll each of ``urls`` in turn until it answers 200 (never assumed after a sleep); ``error`` with the
    log's tail when ``proc`` exits first or ``timeout_s`` runs out."""
    deadline, pending = time.monotonic() + timeout_s, list(urls)
    while pending and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise error(f"{what} exited with {proc.returncode}:\n{log()[-6000:]}")
        try:
            with urllib.request.urlopen(pending[0], timeout=2.0) as r:
                if r.status == 200:
                    pending.pop(0)
                    continue
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)  # polling interval, not a guess at readiness
    if pending:
        raise error(f"{what} not ready after {timeout_s} s ({pending[0]}):\n{log()[-6000:]}")
