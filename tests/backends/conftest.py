"""Two real tritonservers (PyPI's nvidia-pytriton wheel, Python backend) for the Triton fleet's tests,
started once per module: server A serves ``tiny.fp32``, ``tiny.int8`` and ``clf.fp32``; server B the same
without ``clf.fp32``. Both keep their ports across restarts (``SamePortTriton``), so a test that kills or
stops one can bring it back where the fleet expects it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtest.peers.triton import TritonInstall, TritonServer, ensure_installed
from tests.fixtures.tinyrepo import build_tiny_repository
from varigate.triton_repo import write_python_backend_repo

MODELS_A = ["tiny.fp32", "tiny.int8", "clf.fp32"]
MODELS_B = ["tiny.fp32", "tiny.int8"]


def _kept(name: str) -> property:
    """A port attribute that keeps its first non-zero value: ``TritonServer.start`` picks free ports on
    every start, and a restart here must come back on the same ones."""

    def get(self: SamePortTriton) -> int:
        return self.ports.get(name, 0)

    def set_(self: SamePortTriton, value: int) -> None:
        if not self.ports.get(name):
            self.ports[name] = value

    return property(get, set_)


class SamePortTriton(TritonServer):
    http_port = _kept("http")
    grpc_port = _kept("grpc")
    metrics_port = _kept("metrics")

    def __init__(self, install: TritonInstall, repository: Path, log_path: Path) -> None:
        self.ports: dict[str, int] = {}
        super().__init__(install, repository, log_path)

    def signal_group(self, sig: signal.Signals) -> None:
        """``sig`` to the server and its Python-backend stubs (its own process group)."""
        os.killpg(self.pid, sig)

    def restart(self) -> None:
        self.kill()
        self.start()


@dataclass(frozen=True, slots=True)
class Pair:
    source: Path  # the tiny repository (ONNX models for local onnxruntime)
    a: SamePortTriton
    b: SamePortTriton


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    install = ensure_installed()
    root = tmp_path_factory.mktemp("fleet")
    source = build_tiny_repository(root / "src")
    servers = []
    try:
        for name, models in (("a", MODELS_A), ("b", MODELS_B)):
            write_python_backend_repo(source, root / name, models)
            servers.append(SamePortTriton(install, root / name, root / f"{name}.log").start())
        yield Pair(source, *servers)
    finally:
        for server in servers:
            server.kill()  # SIGKILL to its group: stopped or not
