"""A real NVIDIA tritonserver (2.51, PyPI's nvidia-pytriton wheel: Python backend only) on free loopback
ports, as a peer for benchmarks and tests.

``ensure_installed()`` runs ``scripts/peers/triton.sh`` (idempotent) and returns the install's paths.
``TritonServer(install, repository, log_path)`` serves a Python-backend repository (``varigate
triton-repo``) with the stub's Debian python3.11 venv (any other interpreter's site-packages on its path
gave the models all-zero inputs); readiness is polled on ``/v2/health/ready`` with
``--strict-readiness=true`` (every model loaded), never assumed after a sleep. The server runs in a process
group of its own, so ``kill`` also ends its Python-backend stubs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from loadtest.peers.install import run_installer
from loadtest.server import ROOT, free_port, wait_ready

INSTALL_SCRIPT = ROOT / "scripts" / "peers" / "triton.sh"


class TritonPeerError(RuntimeError):
    """The install or the server failed; the message carries the script's or the server's output."""


@dataclass(frozen=True, slots=True)
class TritonInstall:
    """What ``scripts/peers/triton.sh`` installed under ``root``."""

    root: Path

    @property
    def server_dir(self) -> Path:
        return self.root / "wheel" / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.server_dir / "bin" / "tritonserver"

    @property
    def backend_dir(self) -> Path:
        return self.server_dir / "backends"

    @property
    def library_dir(self) -> Path:
        return self.root / "wheel" / "nvidia_pytriton.libs"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's) without any Python settings of ours, plus the recipe's:
        the wheel's libraries, and the Debian venv for the stub (its site-packages and its bin first)."""
        env = {
            k: v
            for k, v in (os.environ if base is None else base).items()
            if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"
        }
        env["LD_LIBRARY_PATH"] = str(self.library_dir)
        env["PYTHONPATH"] = str(self.venv / "lib" / "python3.11" / "site-packages")
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        return env


def ensure_installed(timeout_s: float = 1800.0) -> TritonInstall:
    """Run the installer (a no-op after the first time) and return the install; ``VARIGATE_PEERS_DIR``
    moves it (default ``<repo>/.peers``)."""
    install = TritonInstall(run_installer(INSTALL_SCRIPT, timeout_s, TritonPeerError))
    if not install.binary.is_file():
        raise TritonPeerError(f"{INSTALL_SCRIPT} printed {install.root}, which has no {install.binary}")
    return install


class TritonServer:
    """``with TritonServer(install, repository, log_path) as t:`` — ready on ``t.http_url`` /
    ``t.grpc_url`` (host:port, as tritonclient takes them) and ``t.metrics_url``."""

    def __init__(
        self,
        install: TritonInstall,
        repository: Path,
        log_path: Path,
        args: Sequence[str] = (),
        start_timeout_s: float = 60.0,
    ) -> None:
        self.install, self.repository, self.log_path = install, repository, log_path
        self.args, self.start_timeout_s = tuple(args), start_timeout_s
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0  # seconds from start to ready

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self) -> Self:
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        command = [
            str(self.install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.install.backend_dir}",
            *("--http-address=127.0.0.1", f"--http-port={self.http_port}"),
            *("--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}"),
            *("--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}"),
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--log-verbose=0",
            *self.args,
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                env=self.install.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: kill() reaches the stubs too
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        self.ready_s = time.monotonic() - started
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        url = f"http://{self.http_url}/v2/health/ready"
        wait_ready(self.proc, [url], self.start_timeout_s, "tritonserver", self.log, TritonPeerError)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (Triton unloads its models and stops their stubs), then the exit status; killed
        (-9) when it does not exit in ``timeout_s``."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9
        self._kill_group()  # a stub its server did not take down
        return status

    def kill(self) -> None:
        if self.proc is None:
            return
        self._kill_group()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def _kill_group(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is empty: nothing left behind

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
